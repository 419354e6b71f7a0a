-- Nexmark's three streams, from one seed: 1 person, 3 auctions and 46 bids in each 50
-- events. EVENTS bounds the stream (all three together); events may be up to 2 seconds
-- out of order, within the 4-second watermark delay.
CREATE TABLE person (
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    email_address TEXT NOT NULL,
    credit_card TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    date_time TIMESTAMP NOT NULL,
    extra TEXT NOT NULL,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'person', events = '${EVENTS:-1000000}', event_rate = '${EVENT_RATE:-10000}',
    rate = '${RATE:-0}', disorder = '2s');

CREATE TABLE auction (
    id BIGINT NOT NULL,
    item_name TEXT NOT NULL,
    description TEXT NOT NULL,
    initial_bid BIGINT NOT NULL,
    reserve BIGINT NOT NULL,
    date_time TIMESTAMP NOT NULL,
    expires TIMESTAMP NOT NULL,
    seller BIGINT NOT NULL,
    category BIGINT NOT NULL,
    extra TEXT NOT NULL,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'auction', events = '${EVENTS:-1000000}', event_rate = '${EVENT_RATE:-10000}',
    rate = '${RATE:-0}', disorder = '2s');

CREATE TABLE bid (
    auction BIGINT NOT NULL,
    bidder BIGINT NOT NULL,
    price BIGINT NOT NULL,
    channel TEXT NOT NULL,
    url TEXT NOT NULL,
    date_time TIMESTAMP NOT NULL,
    extra TEXT NOT NULL,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'bid', events = '${EVENTS:-1000000}', event_rate = '${EVENT_RATE:-10000}',
    rate = '${RATE:-0}', disorder = '2s');

-- q13's side input: a bounded file read first, then joined to the stream.
CREATE TABLE side_input (
    key BIGINT NOT NULL,
    value TEXT NOT NULL
) WITH (connector = 'file', path = '${SIDE_INPUT:-side_input.jsonl}');

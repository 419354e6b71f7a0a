// The console in a real browser (Debian's chromium, headless), as a user goes through
// it: give the token, write a job with an SQL error and see it underlined at its line,
// fix it and submit, see it run (rates above zero, its graph drawn), watch its live
// results, stop it, restore an older checkpoint, cancel and delete it. A screenshot of
// each page goes to SHOTS. Run by crates/sluice/tests/console.rs against a real server.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const BASE = process.env.BASE_URL;
const TOKEN = process.env.TOKEN;
const SHOTS = process.env.SHOTS;
const JOB = 'console-job';
mkdirSync(SHOTS, { recursive: true });

// A paced generator: 400 readings/s, event time 60 times faster, 10 s windows.
const tail = `CREATE TABLE per_sensor WITH (connector = 'blackhole');

INSERT INTO per_sensor
SELECT sensor_id, window_start, window_end, count(*) AS readings, avg(temperature) AS avg_temp
FROM TUMBLE(readings, event_time, INTERVAL '10' SECOND)
GROUP BY sensor_id, window_start, window_end;
`;
const head = `SET checkpoint_interval = '300ms';
CREATE TABLE readings (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    humidity      DOUBLE,
    pressure      DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL,
    reading_id    BIGINT,
    WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH (connector = 'generator', profile = 'iot', keys = '8', rate = '400', speedup = '60',
        disorder = '1s', batch_size = '20');

`;
// The INSERT names a column the table lacks, on line 18 of this text.
const broken = head + tail.replace('avg(temperature)', 'avg(temprature)');
const fixed = head + tail;

const step = (what) => console.log(`-- ${what}`);

// A job submitted over the API, as any client does.
async function submit(name, sql) {
  const r = await fetch(`${BASE}/api/v1/jobs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ name, sql }),
  });
  assert.equal(r.status, 201, await r.text());
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.setDefaultTimeout(30_000);
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
page.on('dialog', (d) => d.accept());
const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

try {
  step('the page loads without a token, then asks for one once');
  await page.goto(BASE + '/');
  await page.locator('#token-dialog[open]').waitFor();
  await page.fill('#token-input', TOKEN);
  await page.click('#token-form button');
  await page.locator('#jobs').waitFor();
  await page.locator('#no-jobs').waitFor({ state: 'visible' });
  await shot('1-jobs-empty');

  step('an SQL error shows at its line, with the sentence');
  await page.click('#nav-new');
  await page.fill('#job-name', JOB);
  await page.fill('#sql', broken);
  const problem = page.locator('#sql-problem.bad');
  await problem.waitFor();
  const text = await problem.textContent();
  assert.match(text, /^Line 18, column \d+: /, text);
  assert.match(text, /temprature/, text);
  const underlined = page.locator('#bad-at');
  await underlined.waitFor();
  assert.match(await underlined.textContent(), /temprature/);
  // The underline sits on the 18th line of the editor.
  const box = await underlined.boundingBox();
  const editor = await page.locator('#sql').boundingBox();
  const line = Math.floor((box.y + box.height / 2 - editor.y - 11) / 20) + 1;
  assert.equal(line, 18, `the underline is on line ${line}`);
  await shot('2-new-job-with-an-error');
  // Submitting it anyway is refused and the error stays.
  await page.click('#submit');
  await page.locator('#sql-problem.bad').waitFor();

  step('fixed, it validates and is submitted');
  await page.fill('#sql', fixed);
  await page.locator('#sql-problem.ok').waitFor();
  await page.locator('#sql-plan').waitFor({ state: 'visible' });
  await page.click('#submit');
  await page.waitForURL(`**/#/jobs/${JOB}`);

  step('it runs: rates above zero, its graph drawn');
  await page.locator('h1 [data-state="running"]').waitFor();
  await page.locator('#graph g.node').nth(2).waitFor();
  assert.equal(await page.locator('#graph g.node').count(), 3);
  assert.equal(await page.locator('#graph path.edge').count(), 2);
  await page.waitForFunction(() => {
    const t = document.querySelector('#graph g.node.source .rates');
    return t && /reads [1-9]/.test(t.textContent);
  });
  await page.waitForFunction(() => document.querySelectorAll('#checkpoints tbody tr[data-epoch]').length >= 3);
  await page.waitForFunction(() => document.querySelectorAll('#partitions tbody tr td').length >= 5);
  await shot('3-job');

  step('the jobs page shows it with its rate and sparkline');
  await page.click('#nav-jobs');
  const row = page.locator(`#jobs tr[data-job="${JOB}"]`);
  await row.waitFor();
  await page.waitForFunction((job) => {
    const r = document.querySelector(`#jobs tr[data-job="${job}"] td.rate`);
    return r && Number(r.textContent.replace(/[^0-9.]/g, '')) > 0;
  }, JOB);
  await page.waitForFunction((job) => document.querySelector(`#jobs tr[data-job="${job}"] svg.spark polyline`), JOB);
  await shot('4-jobs');

  step('live results: rows arrive');
  await row.locator('a').first().click();
  await page.locator('#sinks a[data-sink="per_sensor"]').click();
  await page.locator('#live-state', { hasText: 'watching' }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector('#live-received').textContent) >= 20);
  const cells = await page.locator('#live-rows thead th').allTextContents();
  assert.deepEqual(cells, ['#', 'sensor_id', 'window_start', 'window_end', 'readings', 'avg_temp']);
  assert.ok(await page.locator('#live-rows tbody tr').count() >= 20);
  await shot('5-live-results');

  step('stop it; restore an older checkpoint from the list');
  await page.goto(`${BASE}/#/jobs/${JOB}`);
  await page.locator('h1 [data-state="running"]').waitFor();
  await page.click('h1 button[data-action="stop"]');
  await page.locator('h1 [data-state="stopped"]').waitFor();
  const epochs = await page.locator('#checkpoints tbody tr[data-epoch]').evaluateAll(
    (rows) => rows.map((r) => Number(r.dataset.epoch)));
  assert.ok(epochs.length >= 2, `checkpoints listed: ${epochs}`);
  const older = epochs[epochs.length - 1];
  assert.ok(older < epochs[0], `${older} is older than ${epochs[0]}`);
  await shot('6-stopped-with-checkpoints');
  await page.click(`#checkpoints tr[data-epoch="${older}"] button[data-action="restore"]`);
  await page.locator('h1 [data-state="running"]').waitFor();
  await page.locator('#restored-from', { hasText: `restored from checkpoint ${older}` }).waitFor();
  await shot('7-restored');

  step('cancel and delete');
  await page.click('h1 button[data-action="cancel"]');
  await page.locator('h1 [data-state="cancelled"]').waitFor();
  await page.click('h1 button[data-action="delete"]');
  await page.waitForURL(/#\/$/);
  await page.locator('#no-jobs').waitFor({ state: 'visible' });
  await shot('8-deleted');

  step('a race on the live map: cars move, the leaderboard beside');
  const race = `CREATE TABLE race_positions (car_id TEXT NOT NULL, lap BIGINT NOT NULL,
      lat DOUBLE NOT NULL, lon DOUBLE NOT NULL, speed_kmh DOUBLE NOT NULL, lap_progress DOUBLE NOT NULL,
      event_time TIMESTAMP NOT NULL, WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND)
    WITH (connector = 'generator', profile = 'race', keys = '6', rate = '1000', speedup = '25');
  CREATE TABLE car_positions WITH (connector = 'blackhole');
  CREATE TABLE leaderboard WITH (connector = 'blackhole');
  INSERT INTO car_positions SELECT car_id, lap, lat, lon, speed_kmh, event_time FROM race_positions;
  CREATE VIEW laps AS SELECT car_id, lap,
      CAST(max(event_time) AS BIGINT) - CAST(min(event_time) AS BIGINT) AS lap_ms,
      max(lap_progress) - min(lap_progress) >= 0.97 AS complete
    FROM SESSION(race_positions, event_time, INTERVAL '1' SECOND)
    GROUP BY window_start, window_end, car_id, lap;
  CREATE VIEW standings AS SELECT car_id, count(*) AS laps_done, sum(lap_ms) AS total_ms
    FROM laps WHERE complete GROUP BY car_id;
  INSERT INTO leaderboard SELECT place, car_id, laps_done, total_ms FROM (
    SELECT car_id, laps_done, total_ms, ROW_NUMBER() OVER (ORDER BY laps_done DESC, total_ms, car_id) AS place
    FROM standings) WHERE place <= 5;`;
  await submit('race', race);
  await page.goto(`${BASE}/#/jobs/race/live/car_positions?beside=race/leaderboard`);
  await page.waitForFunction(() => document.querySelectorAll('#live-map g.car').length === 6);
  // The standings fill once the cars complete their first lap (about 3 s at 25 times).
  // The leaderboard: the first five places, in order.
  await page.waitForFunction(() => document.querySelectorAll('#beside-rows tbody tr').length === 5, null, { timeout: 60_000 });
  const places = await page.locator('#beside-rows tbody tr td:first-child').allTextContents();
  assert.deepEqual(places, ['1', '2', '3', '4', '5']);
  const where = () => page.locator('#live-map circle.car').evaluateAll(
    (cs) => cs.map((c) => `${c.getAttribute('cx')},${c.getAttribute('cy')}`));
  const received = () => page.locator('#live-received').textContent();
  const shot1 = await page.locator('#map-box').screenshot({ path: `${SHOTS}/9-race-map-1.png` });
  const first = await where();
  const n1 = await received();
  await page.waitForTimeout(1500);
  const shot2 = await page.locator('#map-box').screenshot({ path: `${SHOTS}/9-race-map-2.png` });
  const second = await where();
  console.log(`positions received: ${n1}, then ${await received()}`);
  assert.equal(first.length, 6);
  assert.ok(first.every((p, i) => p !== second[i]), `every car moved: ${first} then ${second}`);
  assert.ok(!shot1.equals(shot2), 'the two screenshots differ');
  assert.ok(await page.locator('#live-map circle.trail').count() > 100, 'the track is drawn');

  step('an updating status as a card per machine');
  const health = `CREATE TABLE f (machine_id TEXT NOT NULL, sensor_type TEXT NOT NULL, value DOUBLE NOT NULL,
      event_time TIMESTAMP NOT NULL, WATERMARK FOR event_time AS event_time - INTERVAL '10' SECOND)
    WITH (connector = 'generator', profile = 'factory', keys = '6', rate = '300', speedup = '10',
          anomaly_fraction = '0.05');
  CREATE TABLE machine_health WITH (connector = 'blackhole');
  CREATE VIEW newest AS SELECT machine_id, sensor_type, value FROM (
      SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_id, sensor_type ORDER BY event_time DESC) AS n FROM f)
    WHERE n = 1;
  INSERT INTO machine_health
  SELECT machine_id,
         CASE max(CASE WHEN value >= CASE sensor_type WHEN 'temperature' THEN 85 WHEN 'vibration' THEN 9 ELSE 70 END THEN 2
                       WHEN value >= CASE sensor_type WHEN 'temperature' THEN 75 WHEN 'vibration' THEN 6 ELSE 60 END THEN 1
                       ELSE 0 END)
           WHEN 2 THEN 'critical' WHEN 1 THEN 'warning' ELSE 'ok' END AS health,
         max(CASE WHEN sensor_type = 'temperature' THEN value END) AS temperature
  FROM newest GROUP BY machine_id;`;
  await submit('factory', `SET checkpoint_interval = '300ms';\n${health}`);
  await page.goto(`${BASE}/#/jobs/factory/live/machine_health`);
  await page.waitForFunction(() => document.querySelectorAll('#live-cards .card').length === 6);
  const statuses = await page.locator('#live-cards .card').evaluateAll((cs) => cs.map((c) => c.dataset.status));
  assert.ok(statuses.every((s) => ['ok', 'warning', 'critical'].includes(s)), `${statuses}`);
  await page.locator('#card-box').screenshot({ path: `${SHOTS}/10-machine-cards.png` });

  assert.deepEqual(errors, [], 'the page threw');
  console.log('console test passed');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}

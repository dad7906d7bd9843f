// Drives the dashboard in headless Chromium against a running server with simulated devices
// (crates/flotilla/tests/dashboard_browser.rs starts both and runs this script):
// sign in, create a group with the live count, create a job through the wizard, stop and resume
// it, watch it reach `complete` without a reload, filter its failed devices, download the CSV,
// see a device's property change live, and see an operator refused the API tokens.
// With SCREENSHOTS set to a folder, the main screens are saved there as PNGs.
//
// Env: BASE_URL, ADMIN_TOKEN, OPERATOR_TOKEN, TEMPLATE (the devices' template id), DEVICES
// (how many), DEVICE_PREFIX, CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (optional).

import { chromium } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL');
const adminToken = env('ADMIN_TOKEN');
const operatorToken = env('OPERATOR_TOKEN');
const template = env('TEMPLATE');
const devices = Number(env('DEVICES'));
const prefix = env('DEVICE_PREFIX');
const screenshots = process.env.SCREENSHOTS;

// Generous: the waits end as soon as the page shows the state; only a broken page hits them.
const WAIT = { timeout: 60_000 };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shoot(page, name) {
  if (screenshots) await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

async function signIn(context, token) {
  const page = await context.newPage();
  await page.goto(`${base}/`);
  check(page.url().startsWith(`${base}/sign-in`), `not sent to sign in: ${page.url()}`);
  await shoot(page, 'sign-in');
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/jobs`), page.click('button[type=submit]')]);
  return page;
}

/// The text of an element, trimmed.
const text = async (page, selector) => (await page.textContent(selector)).trim();

/// Marks the document, so a later check tells whether the page was reloaded meanwhile.
const mark = (page) => page.evaluate(() => { window.__notReloaded = true; });
const stillMarked = (page) => page.evaluate(() => window.__notReloaded === true);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const admin = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 860 } });
  const page = await signIn(admin, adminToken);

  // A group, its filter previewed live as it is typed: an error at first, then the count.
  await page.goto(`${base}/groups/new`);
  await page.fill('#id', 'fleet');
  await page.fill('#display_name', 'Simulated thermostats');
  await page.fill('#filter', 'SELECT * FROM devices WHERE $template =');
  await page.waitForSelector('#preview-error', WAIT);
  await page.fill('#filter', `SELECT * FROM devices WHERE $template = "${template}"`);
  await page.waitForFunction(
    (n) => document.querySelector('#preview-count')?.textContent.trim() === String(n), devices, WAIT);
  await shoot(page, 'group-editor');
  await Promise.all([page.waitForURL(`${base}/groups`), page.click('#create-group')]);
  check((await text(page, '#fleet td.num')) === String(devices), 'the group list shows its device count');
  await shoot(page, 'groups');

  // The wizard: the group picker shows the live count; a command in batches of 2.
  await page.goto(`${base}/jobs`);
  await Promise.all([page.waitForURL(/\/jobs\/new/), page.click('#new-job')]);
  await page.fill('#display_name', 'Max-min report');
  await page.selectOption('#group', 'fleet');
  await page.waitForFunction(
    (n) => document.querySelector('#group-count')?.textContent.startsWith(`${n} devices`), devices, WAIT);
  await page.selectOption('#capability', `command|${template}|getMaxMinReport`);
  await page.fill('#value', '2026-01-01T00:00:00Z');
  await page.selectOption('#batch_type', 'number');
  await page.fill('#batch_value', '2');
  await shoot(page, 'new-job');
  const jobId = await page.inputValue('#job_id');
  await Promise.all([page.waitForURL(`${base}/jobs/${jobId}`), page.click('#run')]);

  // Stop it while it runs, then resume it.
  await page.waitForSelector('#stop', WAIT);
  await Promise.all([page.waitForURL(`${base}/jobs/${jobId}`), page.click('#stop')]);
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'stopped', null, WAIT);
  await shoot(page, 'job-stopped');
  await Promise.all([page.waitForURL(`${base}/jobs/${jobId}`), page.click('#resume')]);

  // Watch it finish without a reload: the counters move and the status becomes `complete`.
  await mark(page);
  const finished = async () =>
    Number(await text(page, '#count-completed')) + Number(await text(page, '#count-failed'));
  const before = await finished();
  check(before < devices, `the stopped job had finished already (${before} of ${devices})`);
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'complete', null, WAIT);
  check(await stillMarked(page), 'the job page was reloaded while it ran');
  const after = await finished();
  check(after === devices && after > before, `progress went from ${before} to ${after} of ${devices}`);
  const failed = Number(await text(page, '#count-failed'));
  check(failed > 0, 'some simulated devices fail');
  check((await page.locator('#batches tbody tr').count()) === devices / 2, 'one row per batch');
  check((await text(page, '#reasons tbody tr td.num')) === String(failed), 'failures grouped by reason');
  await shoot(page, 'job');

  // Its failed devices only.
  await page.selectOption('#status', 'failed');
  await Promise.all([page.waitForURL(/status=failed/), page.click('#device-filter button[type=submit]')]);
  const rows = page.locator('#devices tbody tr');
  check((await rows.count()) === failed, `the filter shows the ${failed} failed devices`);
  const statuses = await page.locator('#devices tbody tr td:nth-child(3)').allTextContents();
  check(statuses.every((s) => s.trim() === 'failed'), `only failed devices: ${statuses}`);
  const failedIds = (await page.locator('#devices tbody tr td:first-child').allTextContents()).map((s) => s.trim());

  // The CSV of what the page shows: a header and one row per failed device.
  const [download] = await Promise.all([page.waitForEvent('download', WAIT), page.click('#export')]);
  const csv = (await readFile(await download.path(), 'utf8')).trim().split('\n');
  check(csv[0] === 'deviceId,status,batch,reasonCode,reason,responseCode,response', `CSV header: ${csv[0]}`);
  check(csv.length === failed + 1, `CSV rows: ${csv.length - 1}, want ${failed}`);
  const csvIds = csv.slice(1).map((line) => line.split(',')[0]);
  check(JSON.stringify(csvIds) === JSON.stringify(failedIds), `CSV ids ${csvIds} vs the table's ${failedIds}`);
  check(csv.slice(1).every((line) => line.split(',')[1] === 'failed'), 'CSV rows are failed devices');
  // And the whole job's, read with the session cookie.
  const whole = await page.request.get(`${base}/jobs/${jobId}/export.csv`);
  check(whole.ok(), `export: ${whole.status()}`);
  check((await whole.text()).trim().split('\n').length === devices + 1, 'the whole CSV has every device');

  // Copy opens the wizard with the job's settings; rerun makes a job of the failed devices.
  await page.goto(`${base}/jobs/${jobId}`);
  await Promise.all([page.waitForURL(/\/jobs\/new\?copy=/), page.click('#copy')]);
  check((await page.inputValue('#display_name')) === 'Max-min report (copy)', 'the copy is named so');
  check((await page.inputValue('#capability')) === `command|${template}|getMaxMinReport`, 'the copy keeps the command');
  check((await page.inputValue('#batch_value')) === '2', 'the copy keeps the batch size');
  await page.goto(`${base}/jobs/${jobId}`);
  await Promise.all([page.waitForURL((url) => url.pathname.startsWith(`/jobs/${jobId}-rerun-`)), page.click('#rerun')]);
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'complete', null, WAIT);
  check(Number(await text(page, '#count-total')) === failed, 'the rerun covers the failed devices');

  // The jobs list.
  await page.goto(`${base}/jobs`);
  check((await text(page, `tr[data-job="${jobId}"] .status`)) === 'complete', 'the list shows the job complete');
  await shoot(page, 'jobs');

  // A device's property change shows on its page within a poll, without a reload.
  const device = `${prefix}00000`;
  await page.goto(`${base}/devices/${device}`);
  await mark(page);
  const write = await page.request.patch(`${base}/api/devices/${device}/properties?api-version=2022-07-31`, {
    headers: { Authorization: adminToken },
    data: { targetTemperature: 33.5 },
  });
  check(write.status() === 202, `property write: ${write.status()}`);
  await page.waitForFunction(
    () => [...document.querySelectorAll('#properties tr')].some((row) =>
      row.textContent.includes('targetTemperature') && row.textContent.includes('33.5')
      && /\(version/.test(row.textContent)),
    null, WAIT);
  check(await stillMarked(page), 'the device page was reloaded');
  // A command from the device page, answered and kept in its history.
  const historyBefore = await page.locator('#command-history tbody tr').count();
  await page.selectOption('#command', 'getMaxMinReport');
  await page.fill('#request', '2026-01-01T00:00:00Z');
  await Promise.all([page.waitForURL(`${base}/devices/${device}/command`), page.click('#command-form button')]);
  const notice = await text(page, '#notice');
  check(/^getMaxMinReport answered (200|500)/.test(notice), `the command's answer: ${notice}`);
  check((await page.locator('#command-history tbody tr').count()) === historyBefore + 1, 'the history has one more');
  check((await text(page, '#command-history tbody tr:first-child td:nth-child(2)')) === '2026-01-01T00:00:00Z',
    'the newest command first, with its request');
  await shoot(page, 'device');
  await page.goto(`${base}/devices`);
  await shoot(page, 'devices');
  await page.goto(`${base}/templates`);
  await shoot(page, 'templates');
  await page.goto(`${base}/tokens`);
  await shoot(page, 'tokens');

  // An operator: no API tokens section, and the page refused as the REST API refuses it.
  const operator = await browser.newContext();
  const operatorPage = await signIn(operator, operatorToken);
  check((await operatorPage.locator('header nav a[href="/tokens"]').count()) === 0, 'no tokens link for an operator');
  const refused = await operatorPage.goto(`${base}/tokens`);
  check(refused.status() === 403, `an operator's /tokens: ${refused.status()}`);
  const refusal = await text(operatorPage, '#refusal');
  check(refusal.includes('does not have a role that may read API tokens'), `refusal: ${refusal}`);
  await shoot(operatorPage, 'operator-refused');

  console.log(`dashboard flow passed: job ${jobId}, ${failed} of ${devices} devices failed`);
} finally {
  await browser.close();
}

// End-to-end scenarios in headless Chromium against a running Confide server.
// Run by tests/integration/test_web.py: `node e2e/run.mjs <scenario>` with
//   CONFIDE_HTTP   http://127.0.0.1:PORT
//   CONFIDE_TOKEN_ALICE, CONFIDE_TOKEN_BOB   chat tokens (alice: therapist)
//   CONFIDE_TOKEN_SERVICE                    for POST /api/notifications
//   CONFIDE_SESSION                          a fresh session id
//   CONFIDE_SESSION_KEY                      the `chat` scenario's end-to-end key (base64)
//   CONFIDE_SCREENSHOT                       where the `chart` scenario saves the page (optional)
// One browser at a time, closed at the end; exits non-zero with the failed check's message.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const HTTP = env("CONFIDE_HTTP");
const SESSION = env("CONFIDE_SESSION");
const TIMEOUT = 30_000;

async function join(browser, token, key = undefined) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(HTTP + "/");
  await page.getByTestId("no-dev-tokens").waitFor(); // a configured secret: no minting here
  await page.getByTestId("token").fill(token);
  await page.getByTestId("session").fill(SESSION);
  if (key) {
    await page.getByTestId("encrypted").check();
    await page.getByTestId("session-key").fill(key);
  }
  await page.getByTestId("join").click();
  await waitStatus(page, "open");
  return { context, page };
}

const waitStatus = (page, status) =>
  page.getByTestId("status").filter({ hasText: new RegExp(`^${status}$`) }).waitFor();

async function send(page, text) {
  await page.getByTestId("compose").fill(text);
  await page.getByTestId("send").click();
  await shown(page, text);
}

const shown = (page, text) =>
  page.getByTestId("message").filter({ hasText: text }).first().waitFor();

async function messages(page) {
  return page.getByTestId("message").evaluateAll((items) =>
    items.map((li) => ({ offset: Number(li.dataset.offset), text: li.querySelector(".text").textContent })),
  );
}

const scenarios = {
  /** Two pages chat end to end encrypted, see each other's presence and typing. */
  async chat(browser) {
    const key = env("CONFIDE_SESSION_KEY");
    const alice = await join(browser, env("CONFIDE_TOKEN_ALICE"), key);
    const bob = await join(browser, env("CONFIDE_TOKEN_BOB"), key);
    await alice.page.getByTestId("members").filter({ hasText: "bob" }).waitFor();
    await send(alice.page, "hello from alice");
    await shown(bob.page, "hello from alice");
    await bob.page.getByTestId("compose").pressSequentially("hi");
    await alice.page.getByTestId("typing").filter({ hasText: "bob typing" }).waitFor();
    await bob.page.getByTestId("compose").fill("hi alice, bob here");
    await bob.page.getByTestId("send").click();
    await shown(alice.page, "hi alice, bob here");
    const a = await messages(alice.page);
    const b = await messages(bob.page);
    assert.deepEqual(a.map((m) => m.text), ["hello from alice", "hi alice, bob here"]);
    assert.deepEqual(b, a, "both pages show the same messages at the same offsets");
    assert.equal(a[1].offset, a[0].offset + 1);
  },

  /** A page goes offline while the other sends; back online it shows each message once, in order. */
  async offline(browser) {
    const alice = await join(browser, env("CONFIDE_TOKEN_ALICE"));
    const bob = await join(browser, env("CONFIDE_TOKEN_BOB"));
    await send(bob.page, "before 1");
    await shown(alice.page, "before 1");
    await alice.context.setOffline(true);
    await waitStatus(alice.page, "reconnecting");
    for (const text of ["while offline 1", "while offline 2", "while offline 3"]) {
      await send(bob.page, text);
    }
    await alice.context.setOffline(false);
    await waitStatus(alice.page, "open");
    await shown(alice.page, "while offline 3");
    await send(bob.page, "after"); // a barrier: anything duplicated would be shown by now
    await shown(alice.page, "after");
    const got = await messages(alice.page);
    const want = ["before 1", "while offline 1", "while offline 2", "while offline 3", "after"];
    assert.deepEqual(got.map((m) => m.text), want);
    const offsets = got.map((m) => m.offset);
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), "consecutive offsets, once each");
    assert.deepEqual(await messages(bob.page), got);
  },

  /** The system chart updates live; the inbox shows a notification and marks it read. */
  async chart(browser) {
    const alice = await join(browser, env("CONFIDE_TOKEN_ALICE"));
    const chart = alice.page.getByTestId("chart");
    await alice.page.waitForFunction(
      () => Number(document.querySelector("[data-testid=chart]")?.dataset.updates) >= 3,
      null,
      { timeout: TIMEOUT },
    );
    const points = await chart.locator("polyline").first().getAttribute("points");
    assert.ok(points.split(" ").length >= 3, "the chart draws the updates");
    const posted = await fetch(`${HTTP}/api/notifications`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${env("CONFIDE_TOKEN_SERVICE")}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ user: "alice", kind: "reminder", title: "Session at 3pm", body: "Group room" }),
    });
    assert.equal(posted.status, 202);
    await alice.page.getByTestId("inbox").getByText("Session at 3pm").waitFor();
    await alice.page.getByTestId("unread").filter({ hasText: /^1$/ }).waitFor();
    await send(alice.page, "Welcome, everyone.");
    await send(alice.page, "Today: sleep and routines.");
    const before = Number(await chart.getAttribute("data-updates"));
    await alice.page.waitForFunction(
      (n) => Number(document.querySelector("[data-testid=chart]")?.dataset.updates) > n + 2,
      before,
      { timeout: TIMEOUT },
    );
    if (process.env.CONFIDE_SCREENSHOT) {
      await alice.page.screenshot({ path: process.env.CONFIDE_SCREENSHOT });
    }
    await alice.page.getByRole("button", { name: "mark read" }).click();
    await alice.page.getByTestId("unread").filter({ hasText: /^0$/ }).waitFor();
  },
};

const name = process.argv[2];
const scenario = scenarios[name];
if (!scenario) {
  console.error(`usage: node e2e/run.mjs ${Object.keys(scenarios).join("|")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  await scenario(browser);
  console.log(`e2e ${name}: ok`);
} finally {
  await browser.close();
}

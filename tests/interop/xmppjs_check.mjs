// Interop checks of Tern with xmpp.js (@xmpp/client 0.14, Node 20).
//
//   node xmppjs_check.mjs check  --starttls-port P --tls-port P2 --alice-password X --bob-password Y [--log FILE]
//   node xmppjs_check.mjs listen --service xmpp://localhost:P --jid carol@localhost --password X
//                                --expect-body B [--expect-from dave@localhost] [--timeout 30]
//
// The CA must be given in NODE_EXTRA_CA_CERTS (Node reads it only at start).
//
// `check` runs, for xmpp://localhost:P (STARTTLS) and xmpps://localhost:P2 (direct TLS):
// two clients (alice, bob) with SASL forced to SCRAM-SHA-1 through the `credentials`
// callback of @xmpp/client (it receives the offered mechanisms the library supports and
// picks one), the bound JID, a message alice -> bob's full JID and bob -> alice's bare
// JID (body and `from` verified), XEP-0199 ping of the server and XEP-0030 disco#info
// of the server. Then single logins with PLAIN (forced) and with xmpp.js's own choice,
// and a wrong password, which must be refused with <not-authorized/>.
// One `PASS xmppjs ...` / `FAIL xmppjs ...` line per check; exit code 1 if any failed.
//
// `listen` logs in, sends initial presence, prints `READY <jid>`, and exits 0 when a
// message with the expected body (and sender) arrives, 1 on timeout.

import { appendFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { client, xml } from "@xmpp/client";

const STEP_TIMEOUT = 10_000;
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_STREAMS = "http://etherx.jabber.org/streams";
const EXPECTED_FEATURES = [
  "urn:xmpp:ping",
  "jabber:iq:version",
  "urn:xmpp:time",
  "http://jabber.org/protocol/disco#info",
];

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const opts = { mode };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    opts[a.slice(2)] = rest[i + 1];
    i++;
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const domain = opts.domain ?? "localhost";
const logFile = opts.log;
let passes = 0;
let failures = 0;

function log(line) {
  if (logFile) appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
}

function report(ok, name, detail = "") {
  if (ok) passes++;
  else failures++;
  const line = `${ok ? "PASS" : "FAIL"} xmppjs ${name}${detail ? ` (${detail})` : ""}`;
  console.log(line);
  log(line);
  return ok;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// A client whose SASL mechanism is chosen by us (or by xmpp.js when `mech` is null).
function makeClient({ service, username, password, mech, tag }) {
  const info = { offered: null, usable: null, mech: null, saslFailure: null, errors: [] };
  const xmpp = client({
    service,
    domain,
    resource: `xjs-${randomUUID().slice(0, 6)}`,
    timeout: STEP_TIMEOUT,
    credentials: async (authenticate, mechanisms) => {
      // `mechanisms`: the offered ones xmpp.js supports, in its order of preference.
      info.usable = mechanisms;
      const chosen = mech ?? (xmpp.isSecure() ? mechanisms[0] : mechanisms.find((m) => m !== "PLAIN"));
      if (!mechanisms.includes(chosen)) {
        throw new Error(`mechanism ${chosen} not usable; offered & supported: ${mechanisms}`);
      }
      info.mech = chosen;
      await authenticate({ username, password }, chosen);
    },
  });
  xmpp.reconnect.stop();
  xmpp.on("error", (err) => {
    info.errors.push(String(err?.condition ?? err?.message ?? err));
    log(`[${tag}] error ${err?.stack ?? err}`);
  });
  xmpp.on("nonza", (el) => {
    if (el.is("features", NS_STREAMS)) {
      const m = el.getChild("mechanisms", NS_SASL);
      if (m) info.offered = m.getChildren("mechanism").map((c) => c.text());
    }
    if (el.is("failure", NS_SASL)) {
      info.saslFailure = el.children.find((c) => typeof c !== "string" && c.name !== "text")?.name;
    }
  });
  xmpp.on("input", (data) => log(`[${tag}] IN  ${data}`));
  xmpp.on("output", (data) => log(`[${tag}] OUT ${data}`));
  xmpp.messages = [];
  xmpp.waiters = [];
  xmpp.on("stanza", (st) => {
    if (st.is("message") && st.getChildText("body")) {
      xmpp.messages.push(st);
      for (const w of xmpp.waiters.splice(0)) w();
    }
  });
  xmpp.info = info;
  return xmpp;
}

function tlsSocket(xmpp) {
  // @xmpp/tls wraps node's TLSSocket in .socket
  const s = xmpp.socket?.socket ?? xmpp.socket;
  return {
    protocol: s?.getProtocol?.() ?? null,
    alpn: s?.alpnProtocol || "none",
  };
}

async function start(xmpp) {
  const jid = await withTimeout(xmpp.start(), STEP_TIMEOUT, "login");
  await xmpp.send(xml("presence"));
  return jid;
}

async function stop(xmpp) {
  try {
    if (xmpp.status !== "offline" && xmpp.status !== "disconnect") {
      await withTimeout(xmpp.stop(), 3000, "stop");
    }
  } catch {
    try {
      xmpp.socket?.socket?.destroy?.();
      xmpp.socket?.destroy?.();
    } catch {}
  }
}

async function waitMessage(xmpp, body, ms = STEP_TIMEOUT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = xmpp.messages.find((m) => m.getChildText("body") === body);
    if (found) return found;
    const left = deadline - Date.now();
    if (left <= 0) return null;
    await new Promise((resolve) => {
      const t = setTimeout(resolve, left);
      xmpp.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

async function serverChecks(xmpp, label) {
  try {
    const reply = await xmpp.iqCaller.request(
      xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })),
      STEP_TIMEOUT,
    );
    report(reply.attrs.type === "result", `${label} ping server (XEP-0199)`);
  } catch (err) {
    report(false, `${label} ping server (XEP-0199)`, String(err?.condition ?? err?.message ?? err));
  }
  try {
    const query = await xmpp.iqCaller.get(
      xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }),
      domain,
      STEP_TIMEOUT,
    );
    const features = query.getChildren("feature").map((f) => f.attrs.var);
    const identities = query.getChildren("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`);
    const missing = EXPECTED_FEATURES.filter((f) => !features.includes(f));
    report(
      missing.length === 0 && identities.includes("server/im"),
      `${label} disco#info of server (XEP-0030)`,
      `${missing.length ? `missing ${missing.join(",")}; ` : ""}identities ${identities.join(",")}`,
    );
  } catch (err) {
    report(false, `${label} disco#info of server (XEP-0030)`, String(err?.condition ?? err?.message ?? err));
  }
}

async function pairScenario(label, service, mech) {
  const alice = makeClient({ service, username: opts.alice ?? "alice", password: opts["alice-password"], mech, tag: `${label} alice` });
  const bob = makeClient({ service, username: opts.bob ?? "bob", password: opts["bob-password"], mech, tag: `${label} bob` });
  try {
    let ok = true;
    for (const [who, c] of [["alice", alice], ["bob", bob]]) {
      try {
        const jid = await start(c);
        const { protocol, alpn } = tlsSocket(c);
        report(
          protocol !== null && c.info.mech === mech,
          `${label} ${who} login`,
          `mech=${c.info.mech} tls=${protocol}${service.startsWith("xmpps") ? ` alpn=${alpn}` : ""} offered=${c.info.offered}`,
        );
        report(
          jid.bare().toString() === `${c === alice ? opts.alice ?? "alice" : opts.bob ?? "bob"}@${domain}` && !!jid.resource,
          `${label} ${who} bind`,
          `bound ${jid}`,
        );
      } catch (err) {
        ok = false;
        report(false, `${label} ${who} login`, `${err?.message ?? err}; sasl failure=${c.info.saslFailure} offered=${c.info.offered} errors=${c.info.errors}`);
      }
    }
    if (!ok) return;

    let body = `hello bob from alice ${randomUUID()}`;
    await alice.send(xml("message", { to: bob.jid.toString(), type: "chat" }, xml("body", {}, body)));
    let got = await waitMessage(bob, body);
    report(
      !!got && got.attrs.from === alice.jid.toString(),
      `${label} message alice->bob (full JID)`,
      got ? `from=${got.attrs.from}` : "not received",
    );

    body = `hello alice from bob ${randomUUID()}`;
    await bob.send(xml("message", { to: alice.jid.bare().toString(), type: "chat" }, xml("body", {}, body)));
    got = await waitMessage(alice, body);
    report(
      !!got && got.attrs.from === bob.jid.toString(),
      `${label} message bob->alice (bare JID)`,
      got ? `from=${got.attrs.from}` : "not received",
    );

    await serverChecks(alice, label);
  } finally {
    await Promise.all([stop(alice), stop(bob)]);
  }
}

async function singleLogin(label, service, mech, password = opts["alice-password"]) {
  const c = makeClient({ service, username: opts.alice ?? "alice", password, mech, tag: label });
  try {
    await start(c);
    const { protocol } = tlsSocket(c);
    return { ok: true, c, protocol };
  } catch (err) {
    return { ok: false, c, err };
  } finally {
    await stop(c);
  }
}

async function runChecks() {
  const starttls = `xmpp://localhost:${opts["starttls-port"]}`;
  const direct = `xmpps://localhost:${opts["tls-port"]}`;
  await pairScenario("starttls scram-sha-1", starttls, "SCRAM-SHA-1");
  await pairScenario("direct-tls scram-sha-1", direct, "SCRAM-SHA-1");

  let r = await singleLogin("starttls plain login", starttls, "PLAIN");
  report(r.ok && r.c.info.mech === "PLAIN", "starttls plain login",
    r.ok ? `mech=${r.c.info.mech} tls=${r.protocol}` : `${r.err?.message}; sasl failure=${r.c.info.saslFailure}`);

  r = await singleLogin("direct-tls default mechanism login", direct, null);
  report(r.ok, "direct-tls default mechanism login",
    r.ok ? `xmpp.js chose ${r.c.info.mech} among ${r.c.info.usable}; tls=${r.protocol}` : `${r.err?.message}; sasl failure=${r.c.info.saslFailure}`);

  r = await singleLogin("starttls scram-sha-1 wrong password", starttls, "SCRAM-SHA-1", `${opts["alice-password"]}-wrong`);
  report(!r.ok && r.c.info.saslFailure === "not-authorized", "starttls scram-sha-1 wrong password rejected",
    r.ok ? "a session was opened with a wrong password" : `<${r.c.info.saslFailure}/> ${r.err?.message}`);
}

async function runListen() {
  const c = makeClient({
    service: opts.service,
    username: opts.jid.split("@")[0],
    password: opts.password,
    mech: opts.mech ?? "SCRAM-SHA-1",
    tag: "listen",
  });
  try {
    try {
      await start(c);
    } catch (err) {
      console.log(`ERROR listener login: ${err?.message}; sasl failure=${c.info.saslFailure}`);
      return 2;
    }
    await new Promise((r) => setTimeout(r, 300));
    console.log(`READY ${c.jid}`);
    const timeout = Number(opts.timeout ?? 30) * 1000;
    const got = await waitMessage(c, opts["expect-body"], timeout);
    if (!got) {
      for (const m of c.messages) console.log(`GOT from=${m.attrs.from} body=${JSON.stringify(m.getChildText("body"))}`);
      console.log(`TIMEOUT no message with body ${JSON.stringify(opts["expect-body"])}`);
      return 1;
    }
    console.log(`GOT from=${got.attrs.from} type=${got.attrs.type} body=${JSON.stringify(got.getChildText("body"))}`);
    const fromBare = (got.attrs.from ?? "").split("/")[0];
    if (opts["expect-from"] && fromBare !== opts["expect-from"]) {
      console.log(`MISMATCH from bare ${fromBare}, expected ${opts["expect-from"]}`);
      return 1;
    }
    console.log("RECEIVED");
    return 0;
  } finally {
    await stop(c);
  }
}

// A hard deadline for the whole process, whatever hangs.
const deadlineMs = Number(opts.deadline ?? 120) * 1000;
setTimeout(() => {
  report(false, `${opts.mode} finished before the deadline`, `${deadlineMs / 1000}s`);
  process.exit(1);
}, deadlineMs).unref();

let code;
try {
  if (opts.mode === "check") {
    await runChecks();
    console.log(`xmppjs totals: passed=${passes} failed=${failures}`);
    code = failures ? 1 : 0;
  } else if (opts.mode === "listen") {
    code = await runListen();
  } else {
    console.error("usage: xmppjs_check.mjs check|listen ...");
    code = 2;
  }
} catch (err) {
  report(false, `${opts.mode} unexpected error`, err?.stack ?? String(err));
  code = 1;
}
process.exit(code);

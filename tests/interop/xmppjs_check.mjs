// Interop checks of Tern with xmpp.js (@xmpp/client 0.14, Node 20).
//
//   node xmppjs_check.mjs check  --starttls-port P --tls-port P2 --alice-password X --bob-password Y [--log FILE]
//   node xmppjs_check.mjs listen --service xmpp://localhost:P --jid carol@localhost --password X
//                                --expect-body B [--expect-from dave@localhost] [--timeout 30]
//   node xmppjs_check.mjs rfc6121 --service xmpps://localhost:P2 --user frank --password X
//                                 --peer erin@localhost --sync DIR [--log FILE]
//   node xmppjs_check.mjs sm --service xmpps://localhost:P2 --user ivan --password X
//                            --peer judy --peer-password Y [--count 20] [--log FILE]
//
// The CA must be given in NODE_EXTRA_CA_CERTS (Node reads it only at start).
//
// `check` runs, for xmpp://localhost:P (STARTTLS) and xmpps://localhost:P2 (direct TLS):
// two clients (alice, bob) with SASL forced to SCRAM-SHA-1 through the `credentials`
// callback of @xmpp/client (it receives the offered mechanisms the library supports and
// picks one), the bound JID, a message alice -> bob's full JID and bob -> alice's bare
// JID (body and `from` verified), XEP-0199 ping of the server and XEP-0030 disco#info
// of the server. Then single logins with PLAIN (forced) and with xmpp.js's own choice,
// and a wrong password, which must be refused with <not-authorized/>. With --extdisco-host
// (and --extdisco-secret, --extdisco-ttl): XEP-0215 through raw IQs, as slixmpp_check.py
// does (services, services type='turn', credentials, unknown host, the :1 namespace,
// disco#info), TURN REST passwords checked with node:crypto's HMAC-SHA1.
// One `PASS xmppjs ...` / `FAIL xmppjs ...` line per check; exit code 1 if any failed.
//
// `listen` logs in, sends initial presence, prints `READY <jid>`, and exits 0 when a
// message with the expected body (and sender) arrives, 1 on timeout.
//
// `rfc6121` is frank's side of the RFC 6121 scenario with a slixmpp client (erin,
// `slixmpp_check.py rfc6121`, running at the same time; they meet through files in
// --sync): subscribe/subscribed both ways with roster pushes and roster gets, each other's
// presence, a clean disconnect (frank), an offline message with a delay after frank's
// next initial presence, and erin's abrupt disconnect seen as unavailable.
//
// `sm` is XEP-0198 with @xmpp/stream-management: the TCP connection is cut under the
// client (its TLSSocket destroyed) while a second account sends it numbered messages;
// xmpp.js reconnects by itself and resumes; all messages must arrive (see runSm).

import { appendFileSync, existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHmac, randomUUID } from "node:crypto";
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
  // @xmpp/client 0.14 has no "input"/"output" events: log parsed elements and sends.
  xmpp.on("element", (el) => log(`[${tag}] IN  ${el}`));
  xmpp.on("send", (el) => log(`[${tag}] OUT ${el}`));
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

  if (opts["extdisco-host"]) await extdiscoScenario(direct);
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

// ---------------------------------------------------------------- XEP-0215 (raw IQs)

const NS_EXT2 = "urn:xmpp:extdisco:2";
const NS_EXT1 = "urn:xmpp:extdisco:1";
const NS_ROSTER = "jabber:iq:roster";
const NS_DELAY = "urn:xmpp:delay";
// The services run.sh configures under [modules.external_services] (host, secret and ttl
// come from the command line).
const EXTDISCO_SERVICES = [
  { type: "stun", transport: "udp", port: 3478, restricted: false },
  { type: "turn", transport: "udp", port: 3478, restricted: true },
  { type: "turn", transport: "tcp", port: 3478, restricted: true },
  { type: "turns", transport: "tcp", port: 5349, restricted: true },
];

// The TURN REST password, computed here independently of Tern.
function turnRestPassword(secret, username) {
  return createHmac("sha1", secret).update(username).digest("base64");
}

// Sends an IQ get; returns { reply } or { err } (the error condition or a timeout text).
async function rawIq(xmpp, to, payload) {
  try {
    const reply = await xmpp.iqCaller.request(xml("iq", { type: "get", to }, payload), STEP_TIMEOUT);
    return { reply };
  } catch (err) {
    if (err?.condition) return { err: `error <${err.condition}/> type=${err.type}`, condition: err.condition };
    return { err: String(err?.message ?? err) };
  }
}

function describeServices(services) {
  return services.map((s) => `${s.type}/${s.transport} ${s.host}:${s.port}`).join(", ");
}

function credentialProblems(s, secret, ttl, nowSec) {
  const problems = [];
  const { username, password, expires } = s;
  if (!username || !password) return ["no username/password"];
  if (s.restricted !== "true") problems.push(`restricted=${s.restricted}`);
  if (password !== turnRestPassword(secret, username)) {
    problems.push(`password of ${username} is not base64(HMAC-SHA1(secret, username))`);
  }
  if (!expires || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(expires)) {
    problems.push(`expires=${expires} is not ISO-8601 UTC (...Z)`);
    return problems;
  }
  const exp = Date.parse(expires) / 1000;
  if (Math.abs(exp - (nowSec + ttl)) > 30) {
    problems.push(`expires ${expires} is now${exp - nowSec >= 0 ? "+" : ""}${Math.round(exp - nowSec)}s, expected now+${ttl}s`);
  }
  const head = username.split(":")[0];
  if (!/^\d+$/.test(head) || Number(head) !== Math.floor(exp)) {
    problems.push(`username ${username} does not start with the expiry ${Math.floor(exp)}`);
  }
  return problems;
}

async function extdiscoChecks(xmpp, label) {
  const host = opts["extdisco-host"];
  const secret = opts["extdisco-secret"] ?? "interop-secret";
  const ttl = Number(opts["extdisco-ttl"] ?? 600);
  const key = (s) => `${s.type}/${s.transport}/${s.host}/${s.port}`;
  const expected = EXTDISCO_SERVICES.map((s) => key({ ...s, host })).sort();
  const restrictedKinds = EXTDISCO_SERVICES.filter((s) => s.restricted).map((s) => `${s.type}/${s.transport}`);
  const now = () => Date.now() / 1000;

  // disco#info of the server advertises XEP-0215.
  let r = await rawIq(xmpp, domain, xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }));
  if (r.reply) {
    const features = r.reply.getChild("query").getChildren("feature").map((f) => f.attrs.var);
    report(features.includes(NS_EXT2), `${label} disco#info lists urn:xmpp:extdisco:2`,
      `extdisco features: ${features.filter((f) => f.includes("extdisco")).join(",")}`);
  } else {
    report(false, `${label} disco#info lists urn:xmpp:extdisco:2`, r.err);
  }

  // <services xmlns='urn:xmpp:extdisco:2'/>: everything.
  let t0 = now();
  r = await rawIq(xmpp, domain, xml("services", { xmlns: NS_EXT2 }));
  let el = r.reply?.getChild("services", NS_EXT2);
  if (!el) {
    report(false, `${label} extdisco:2 services request`, r.err ?? `reply without <services xmlns='${NS_EXT2}'/>: ${r.reply}`);
  } else {
    const services = el.getChildren("service", NS_EXT2).map((s) => s.attrs);
    report(services.length === 4 && JSON.stringify(services.map(key).sort()) === JSON.stringify(expected),
      `${label} extdisco:2 services: stun/udp, turn/udp, turn/tcp, turns/tcp with host, port, transport`,
      describeServices(services));
    const stun = services.filter((s) => s.type === "stun");
    report(stun.length === 1 && stun[0].restricted === "false" && !["username", "password", "expires"].some((k) => k in stun[0]),
      `${label} extdisco:2 stun restricted='false' without credentials`, JSON.stringify(stun));
    const restricted = services.filter((s) => restrictedKinds.includes(`${s.type}/${s.transport}`));
    const problems = restricted.flatMap((s) => credentialProblems(s, secret, ttl, t0).map((p) => `${s.type}/${s.transport}: ${p}`));
    report(restricted.length === 3 && problems.length === 0,
      `${label} extdisco:2 turn/udp, turn/tcp, turns/tcp restricted='true' with username, password = base64(HMAC-SHA1(secret, username)), expires now+${ttl}s`,
      problems.length ? problems.join("; ") : `e.g. username=${restricted[0]?.username} expires=${restricted[0]?.expires}`);
  }

  // <services type='turn'/>: the type is echoed, only turn entries.
  t0 = now();
  r = await rawIq(xmpp, domain, xml("services", { xmlns: NS_EXT2, type: "turn" }));
  el = r.reply?.getChild("services", NS_EXT2);
  if (!el) {
    report(false, `${label} extdisco:2 services type='turn'`, r.err ?? `reply without <services/>: ${r.reply}`);
  } else {
    const services = el.getChildren("service", NS_EXT2).map((s) => s.attrs);
    const got = services.map((s) => `${s.type}/${s.transport}`).sort();
    const problems = services.flatMap((s) => credentialProblems(s, secret, ttl, t0));
    report(el.attrs.type === "turn" && JSON.stringify(got) === JSON.stringify(["turn/tcp", "turn/udp"])
      && services.every((s) => s.host === host) && problems.length === 0,
      `${label} extdisco:2 services type='turn': type echoed, only turn/udp and turn/tcp, with valid credentials`,
      `answer type=${el.attrs.type}, services ${describeServices(services)}${problems.length ? `; ${problems.join("; ")}` : ""}`);
  }

  // <credentials><service type='turn' host=HOST/></credentials>: the two turn services.
  t0 = now();
  r = await rawIq(xmpp, domain, xml("credentials", { xmlns: NS_EXT2 }, xml("service", { type: "turn", host })));
  el = r.reply?.getChild("credentials", NS_EXT2);
  if (!el) {
    report(false, `${label} extdisco:2 credentials for turn at ${host}`, r.err ?? `reply without <credentials xmlns='${NS_EXT2}'/>: ${r.reply}`);
  } else {
    const services = el.getChildren("service", NS_EXT2).map((s) => s.attrs);
    const got = services.map((s) => `${s.type}/${s.transport}/${s.host}`).sort();
    const problems = services.flatMap((s) => credentialProblems(s, secret, ttl, t0));
    report(JSON.stringify(got) === JSON.stringify([`turn/tcp/${host}`, `turn/udp/${host}`]) && problems.length === 0,
      `${label} extdisco:2 credentials for turn at ${host}: <credentials/> with turn/udp and turn/tcp, fresh valid credentials`,
      `${describeServices(services)}${problems.length ? `; ${problems.join("; ")}` : `; username=${services[0]?.username}`}`);
  }

  // A credentials request for a host nobody serves: item-not-found.
  r = await rawIq(xmpp, domain, xml("credentials", { xmlns: NS_EXT2 }, xml("service", { type: "turn", host: "unknown.example.net" })));
  report(!r.reply && r.condition === "item-not-found",
    `${label} extdisco:2 credentials for an unknown host: item-not-found`,
    r.reply ? `answered with a result: ${r.reply}` : r.err);

  // The old namespace: answered in :1, without restricted/expires.
  r = await rawIq(xmpp, domain, xml("services", { xmlns: NS_EXT1 }));
  el = r.reply?.getChild("services", NS_EXT1);
  if (!el) {
    report(false, `${label} extdisco:1 services request`, r.err ?? `reply without <services xmlns='${NS_EXT1}'/>: ${r.reply}`);
  } else {
    const services = el.getChildren("service", NS_EXT1).map((s) => s.attrs);
    const extra = [...new Set(services.flatMap((s) => Object.keys(s).filter((k) => ["restricted", "expires", "action"].includes(k))))];
    const badCreds = services.filter((s) => s.type !== "stun"
      && (!s.username || s.password !== turnRestPassword(secret, s.username)));
    report(services.length === 4 && JSON.stringify(services.map(key).sort()) === JSON.stringify(expected)
      && extra.length === 0 && badCreds.length === 0,
      `${label} extdisco:1 services: answered in :1, 4 services, no restricted/expires, turn credentials valid`,
      `${describeServices(services)}${extra.length ? `; has ${extra}` : ""}${badCreds.length ? `; bad credentials on ${describeServices(badCreds)}` : ""}`);
  }
}

async function extdiscoScenario(service) {
  const label = "xep-0215";
  const c = makeClient({ service, username: opts.alice ?? "alice", password: opts["alice-password"], mech: "SCRAM-SHA-1", tag: label });
  try {
    try {
      await start(c);
    } catch (err) {
      report(false, `${label} login`, `${err?.message ?? err}; sasl failure=${c.info.saslFailure}`);
      return;
    }
    await extdiscoChecks(c, label);
  } finally {
    await stop(c);
  }
}

// ---------------------------------------------------------------- RFC 6121 with slixmpp

// Rendezvous with the slixmpp process through files in a shared folder (see
// slixmpp_check.py's Sync): signal() writes NAME atomically, waitSignal() polls for the
// peer's; ABORT-<side> written by a side that gives up ends the other's waits.
const SYNC_ME = "frank";
function signal(name, value = "") {
  const dir = opts.sync;
  writeFileSync(join(dir, `.${name}.tmp`), value);
  renameSync(join(dir, `.${name}.tmp`), join(dir, name));
  log(`[sync] signal ${name} ${value}`);
}
async function waitSignal(name, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const path = join(opts.sync, name);
    if (existsSync(path)) {
      const value = readFileSync(path, "utf8");
      log(`[sync] got ${name} ${value}`);
      return value;
    }
    const aborted = readdirSync(opts.sync).filter((f) => f.startsWith("ABORT-") && f !== `ABORT-${SYNC_ME}`);
    if (aborted.length || Date.now() > deadline) return null;
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Why waitSignal(name) gave nothing.
function whyNoSignal(name, ms) {
  const aborted = readdirSync(opts.sync).filter((f) => f.startsWith("ABORT-") && f !== `ABORT-${SYNC_ME}`);
  return aborted.length ? `the other side gave up (${aborted.join(", ")})` : `no ${name} signal within ${ms / 1000}s`;
}

// Records presences and roster pushes (answered with a result, as RFC 6121 §2.1.6 asks).
function trackRoster(xmpp) {
  xmpp.presences = [];
  xmpp.pushes = [];
  xmpp.on("stanza", (st) => {
    if (st.is("presence")) {
      xmpp.presences.push(st);
      for (const w of xmpp.waiters.splice(0)) w();
    }
  });
  xmpp.iqCallee.set(NS_ROSTER, "query", (ctx) => {
    xmpp.pushes.push(ctx.stanza);
    for (const w of xmpp.waiters.splice(0)) w();
    return true;
  });
}

// Waits until `pred` holds for an element of `list()`; returns it, or null at the timeout.
async function waitFor(xmpp, list, pred, ms = STEP_TIMEOUT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = list().find(pred);
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

function rosterItem(el, jid) {
  return el?.getChild("query", NS_ROSTER)?.getChildren("item").find((i) => i.attrs.jid === jid) ?? null;
}
function itemText(item) {
  if (!item) return "no item";
  return `subscription=${item.attrs.subscription} ask=${item.attrs.ask} name=${item.attrs.name}`;
}
async function rosterGet(xmpp) {
  return xmpp.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })), STEP_TIMEOUT);
}
const isAvailable = (p) => !p.attrs.type;
const presencesFrom = (xmpp, bare) =>
  xmpp.presences.filter((p) => (p.attrs.from ?? "").split("/")[0] === bare).map((p) => `${p.attrs.from}:${p.attrs.type ?? "available"}`);

// frank's side; the steps are described in slixmpp_check.py's run_rfc6121.
async function runRfc6121() {
  const label = "rfc6121";
  const me = `${opts.user}@${domain}`;
  const erinBare = opts.peer;
  const service = opts.service;
  let completed = false;
  const clients = [];
  const login = async (tag) => {
    const c = makeClient({ service, username: opts.user, password: opts.password, mech: "SCRAM-SHA-1", tag });
    trackRoster(c);
    clients.push(c);
    await withTimeout(c.start(), STEP_TIMEOUT, "login");
    return c;
  };
  try {
    let frank;
    try {
      frank = await login("frank");
      report(true, `${label} frank login (direct TLS)`, `bound ${frank.jid}`);
    } catch (err) {
      report(false, `${label} frank login (direct TLS)`, `${err?.message ?? err}; sasl failure=${clients.at(-1)?.info?.saslFailure}`);
      return;
    }
    try {
      const roster = await rosterGet(frank);
      const items = roster.getChild("query", NS_ROSTER)?.getChildren("item") ?? [];
      report(items.length === 0, `${label} frank roster get before initial presence: empty`, `${items.length} item(s)`);
    } catch (err) {
      report(false, `${label} frank roster get before initial presence`, String(err?.condition ?? err?.message ?? err));
    }
    await frank.send(xml("presence"));
    const frank1 = frank.jid.toString();
    signal("frank-online", frank1);

    const erin = await waitSignal("erin-online", 40_000);
    if (!report(!!erin, `${label} slixmpp side (erin) online`, erin ? `erin ${erin}` : whyNoSignal("erin-online", 40_000))) return;

    // erin's subscription request, from her bare JID.
    let p = await waitFor(frank, () => frank.presences, (x) => x.attrs.type === "subscribe" && (x.attrs.from ?? "").split("/")[0] === erinBare, 30_000);
    report(!!p && p.attrs.from === erinBare, `${label} frank receives erin's subscribe (from her bare JID)`, p ? `from=${p.attrs.from}` : "none within 30s");
    if (!p) return;
    // Approve, and subscribe back.
    await frank.send(xml("presence", { to: erinBare, type: "subscribed" }));
    let push = await waitFor(frank, () => frank.pushes, (x) => rosterItem(x, erinBare)?.attrs.subscription === "from");
    report(!!push, `${label} frank roster push subscription='from' after approving`,
      push ? itemText(rosterItem(push, erinBare)) : `pushes: ${frank.pushes.map((x) => itemText(rosterItem(x, erinBare)))}`);
    await frank.send(xml("presence", { to: erinBare, type: "subscribe" }));
    push = await waitFor(frank, () => frank.pushes, (x) => rosterItem(x, erinBare)?.attrs.ask === "subscribe");
    report(!!push, `${label} frank's subscribe: roster push with ask='subscribe'`,
      push ? itemText(rosterItem(push, erinBare)) : `pushes: ${frank.pushes.map((x) => itemText(rosterItem(x, erinBare)))}`);
    p = await waitFor(frank, () => frank.presences, (x) => x.attrs.type === "subscribed" && (x.attrs.from ?? "").split("/")[0] === erinBare);
    report(!!p && p.attrs.from === erinBare, `${label} frank receives erin's subscribed (from her bare JID)`, p ? `from=${p.attrs.from}` : "none");
    push = await waitFor(frank, () => frank.pushes, (x) => rosterItem(x, erinBare)?.attrs.subscription === "both");
    report(!!push, `${label} frank roster push subscription='both'`,
      push ? itemText(rosterItem(push, erinBare)) : `pushes: ${frank.pushes.map((x) => itemText(rosterItem(x, erinBare)))}`);
    p = await waitFor(frank, () => frank.presences, (x) => isAvailable(x) && x.attrs.from === erin);
    report(!!p, `${label} frank sees erin available (presence from ${erin})`, p ? "received" : `presences from erin: ${presencesFrom(frank, erinBare)}`);
    try {
      const item = rosterItem(await rosterGet(frank), erinBare);
      report(item?.attrs.subscription === "both" && !item.attrs.ask, `${label} frank roster get: erin subscription='both', no ask`, itemText(item));
    } catch (err) {
      report(false, `${label} frank roster get`, String(err?.condition ?? err?.message ?? err));
    }
    signal("frank-both", "done");

    // Wait for erin's checks, then close the stream cleanly (</stream>, then the socket).
    const erinBoth = await waitSignal("erin-both", 40_000);
    if (!report(erinBoth !== null, `${label} erin's side done with the subscription checks`, erinBoth === null ? whyNoSignal("erin-both", 40_000) : "")) return;
    try {
      await withTimeout(frank.stop(), 5000, "stop");
      report(frank.status === "offline", `${label} frank disconnects cleanly (xmpp.js stop: </stream>)`, `status ${frank.status}`);
    } catch (err) {
      report(false, `${label} frank disconnects cleanly (xmpp.js stop: </stream>)`, String(err?.message ?? err));
    }
    signal("frank-offline");

    // erin sends a message meanwhile; frank comes back and gets it after his presence.
    const sentRaw = await waitSignal("erin-sent-offline", 40_000);
    if (!report(!!sentRaw, `${label} erin sent a message while frank was offline`, sentRaw ?? whyNoSignal("erin-sent-offline", 40_000))) return;
    const sent = JSON.parse(sentRaw);
    let frank2c;
    try {
      frank2c = await login("frank again");
    } catch (err) {
      report(false, `${label} frank logs in again`, String(err?.message ?? err));
      return;
    }
    try {
      const item = rosterItem(await rosterGet(frank2c), erinBare);
      report(item?.attrs.subscription === "both", `${label} frank's roster after reconnecting: erin subscription='both' (stored)`, itemText(item));
    } catch (err) {
      report(false, `${label} frank's roster after reconnecting`, String(err?.condition ?? err?.message ?? err));
    }
    // Nothing may arrive before the initial presence (XEP-0160 delivers after it).
    await new Promise((r) => setTimeout(r, 500));
    const early = frank2c.messages.length;
    await frank2c.send(xml("presence"));
    const frank2 = frank2c.jid.toString();
    const got = await waitMessage(frank2c, sent.body);
    if (!got) {
      report(false, `${label} frank receives the offline message after initial presence`,
        `messages: ${frank2c.messages.map((m) => `${m.attrs.from}:${m.getChildText("body")}`)}`);
    } else {
      const delay = got.getChild("delay", NS_DELAY);
      const stamp = delay ? Date.parse(delay.attrs.stamp) / 1000 : NaN;
      const okStamp = Number.isFinite(stamp) && stamp >= sent.sent - 5 && stamp <= Date.now() / 1000 + 5;
      report(early === 0 && got.attrs.from === sent.from && got.attrs.type === "chat" && !!delay && okStamp,
        `${label} frank receives the offline message after initial presence, with <delay xmlns='urn:xmpp:delay'/>`,
        `from=${got.attrs.from} type=${got.attrs.type} delay=${delay ? `from=${delay.attrs.from} stamp=${delay.attrs.stamp}` : "none"}${early ? `; ${early} message(s) before presence` : ""}`);
    }
    p = await waitFor(frank2c, () => frank2c.presences, (x) => isAvailable(x) && x.attrs.from === erin);
    report(!!p, `${label} frank sees erin available after reconnecting (probe answered)`, p ? `from=${p.attrs.from}` : `presences from erin: ${presencesFrom(frank2c, erinBare)}`);
    signal("frank-back", frank2);

    // erin's connection is cut without </stream>.
    const gone = await waitSignal("erin-gone", 40_000);
    if (!report(!!gone, `${label} erin dropped her connection (slixmpp side: TCP closed, no </stream>)`, gone ?? whyNoSignal("erin-gone", 40_000))) return;
    p = await waitFor(frank2c, () => frank2c.presences, (x) => x.attrs.type === "unavailable" && x.attrs.from === gone, 15_000);
    report(!!p, `${label} frank receives unavailable from ${gone} (her TCP connection dropped without </stream>)`,
      p ? "received" : `presences from erin: ${presencesFrom(frank2c, erinBare)}`);
    completed = true;
  } finally {
    if (!completed && opts.sync) signal("ABORT-frank");
    await Promise.all(clients.map(stop));
  }
}

// ---------------------------------------------------------------- XEP-0198 stream management

const NS_SM = "urn:xmpp:sm:3";

function ranges(nums) {
  const sorted = [...new Set(nums)].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `#${sorted[i]}` : `#${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out.join(", ") || "none";
}

// XEP-0198 with @xmpp/stream-management (which @xmpp/client sets up and enables by
// itself, with resume='true'): the client (--user) logs in over direct TLS; a second
// client (--peer) sends it --count numbered chat messages to its full JID: a first batch
// before the cut (all received), a few in flight at the cut (the client stopped reading:
// the server writes them, the client never handles them), a batch during the outage, the
// rest after resumption. The cut: the TLSSocket under xmpp.js is destroyed (no </stream>,
// no close_notify), nothing xmpp.js asked for. xmpp.js's own reconnect (@xmpp/reconnect,
// delay 3 s) brings it back and stream-management resumes (<resume previd h/>). Every
// number must arrive at least once (duplicates allowed by XEP-0198, reported); the
// client's messages around the cut must reach the peer.
async function runSm() {
  const label = "xep-0198";
  const n = Number(opts.count ?? 20);
  const tag = randomUUID().slice(0, 8);
  const service = opts.service;
  const sm = makeClient({ service, username: opts.user, password: opts.password, mech: "SCRAM-SHA-1", tag: "sm client" });
  const peer = makeClient({ service, username: opts.peer, password: opts["peer-password"], mech: "SCRAM-SHA-1", tag: "sm peer" });
  const SM = sm.streamManagement;
  let connectionNo = 0;
  let onlineEvents = 0;
  let enabledEl = null;
  let resumedEl = null;
  const failedEls = [];
  const numbered = []; // { num, conn, delay, to }
  let reconnectingAt = null;
  let disconnectedAt = null;
  sm.on("connect", () => connectionNo++);
  sm.on("online", () => onlineEvents++);
  sm.on("disconnect", () => {
    disconnectedAt ??= Date.now();
  });
  sm.on("nonza", (el) => {
    if (el.is("enabled", NS_SM)) enabledEl = el;
    if (el.is("resumed", NS_SM)) resumedEl = el;
    if (el.is("failed", NS_SM)) failedEls.push(el.toString());
  });
  let resumedEvent = false;
  SM.on("resumed", () => {
    resumedEvent = true;
    for (const w of sm.waiters.splice(0)) w();
  });
  sm.reconnect.on("reconnecting", () => {
    reconnectingAt = Date.now();
  });
  sm.on("stanza", (st) => {
    const m = /^sm (\d+)\/(\d+) (\S+)$/.exec(st.getChildText("body") ?? "");
    if (st.is("message") && m && m[3] === tag) {
      const delay = st.getChild("delay", NS_DELAY);
      numbered.push({ num: Number(m[1]), conn: connectionNo, delay: delay?.attrs.stamp ?? null, to: st.attrs.to });
    }
  });
  const numbers = () => new Set(numbered.map((x) => x.num));
  const waitNumbers = (wanted, ms) => waitFor(sm, () => [numbers()], (set) => wanted.every((i) => set.has(i)), ms);
  const waitUntil = async (pred, ms) => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  };
  const peerErrors = [];
  peer.on("stanza", (st) => {
    if (st.is("message") && st.attrs.type === "error") peerErrors.push(`${st.attrs.id}:${st.getChild("error")?.children?.[0]?.name}`);
  });
  try {
    for (const [who, c] of [["client", sm], ["peer", peer]]) {
      try {
        await start(c);
        report(true, `${label} ${who} login (direct TLS)`, `bound ${c.jid}`);
      } catch (err) {
        report(false, `${label} ${who} login (direct TLS)`, `${err?.message ?? err}; sasl failure=${c.info.saslFailure}`);
        return;
      }
    }
    await waitUntil(() => SM.enabled && enabledEl !== null, STEP_TIMEOUT);
    report(SM.enabled && !!SM.id && enabledEl?.attrs.resume === "true" && enabledEl?.attrs.id === SM.id,
      `${label} stream management enabled by @xmpp/client with resumption (<enabled resume='true' id/>; streamManagement.enabled, id)`,
      enabledEl ? `enabled=${SM.enabled} id=${SM.id}; server: ${enabledEl}` : `no <enabled/> within ${STEP_TIMEOUT / 1000}s; sm failed: ${failedEls}`);
    if (!SM.enabled || !SM.id) return;
    const full = sm.jid.toString();
    const smId = SM.id;
    const sendNumbered = (i) => peer.send(xml("message", { to: full, type: "chat", id: `sm-${tag}-${i}` }, xml("body", {}, `sm ${i}/${n} ${tag}`)));
    const range = (a, b) => Array.from({ length: b - a + 1 }, (_, k) => a + k);
    const first = range(1, Math.floor(n / 3));
    const atCut = range(first.at(-1) + 1, first.at(-1) + 3);
    const outage = range(atCut.at(-1) + 1, atCut.at(-1) + Math.floor(n / 3));
    const after = range(outage.at(-1) + 1, n);

    for (const i of first) await sendNumbered(i);
    const okFirst = await waitNumbers(first, STEP_TIMEOUT);
    report(!!okFirst, `${label} messages ${ranges(first)} received before the cut`, `got ${ranges([...numbers()])}`);

    // In flight at the cut: xmpp.js stops reading (the TLSSocket paused, as on a stalled
    // network); the peer sends #7-9, which the server writes but the client never
    // handles. Then the client sends two messages, which the server receives, and the
    // connection is cut 50 ms later, before xmpp.js asks for their acknowledgement (it
    // waits 250 ms): they are in its queue, and the server's <resumed h/> must count
    // them. (xmpp.js queues a stanza only once written: a send into the dead socket is
    // rejected to the application, not resent, so none is tried.)
    const outBodies = [1, 2].map((i) => `sm out ${i} ${tag}`);
    const sendOut = (b) => sm.send(xml("message", { to: peer.jid.toString(), type: "chat" }, xml("body", {}, b)));
    const tlsSock = sm.socket.socket;
    tlsSock.pause();
    for (const i of atCut) await sendNumbered(i);
    await new Promise((r) => setTimeout(r, 500));
    for (const b of outBodies) await sendOut(b);
    await new Promise((r) => setTimeout(r, 50));
    const inboundAtCut = SM.inbound;
    sm.reconnect.delay = 3000;
    sm.reconnect.start();
    tlsSock.destroy();
    await waitUntil(() => disconnectedAt !== null, STEP_TIMEOUT);
    const qAtCut = SM.outbound_q.map((item) => item.stanza.getChildText("body")?.split(" ")[2] ?? item.stanza.name);
    const outboundAtCut = SM.outbound;
    report(disconnectedAt !== null && SM.id === smId,
      `${label} TCP connection cut under xmpp.js (TLSSocket destroyed, reading paused before): disconnect, stream management id kept`,
      `status=${sm.status} sm id=${SM.id || "none"}; stream-management queue (unacknowledged): ${JSON.stringify(qAtCut)}, acknowledged before: ${outboundAtCut}; handled before the cut: ${inboundAtCut}`);
    if (disconnectedAt === null) return;

    // The outage batch, then a ping round trip: the server has handled them all before
    // xmpp.js reconnects (3 s after the disconnect).
    for (const i of outage) await sendNumbered(i);
    try {
      await peer.iqCaller.request(xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })), STEP_TIMEOUT);
    } catch {}
    const outageDoneAt = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    report(peerErrors.length === 0 && (reconnectingAt === null || reconnectingAt > outageDoneAt),
      `${label} messages ${ranges(outage)} sent during the outage accepted by the server (no error bounce), before xmpp.js reconnected`,
      `${peerErrors.length ? `bounces: ${peerErrors}; ` : ""}sent ${outageDoneAt - disconnectedAt} ms after the disconnect${reconnectingAt !== null ? `, reconnect started ${reconnectingAt - disconnectedAt} ms after it` : ""}`);

    await waitUntil(() => resumedEvent, 15_000);
    const detail = resumedEl
      ? `${resumedEl}; resumed event=${resumedEvent}, online events=${onlineEvents}, connection #${connectionNo}, status=${sm.status}, jid ${sm.jid}, sm failed: ${failedEls.length ? failedEls : "none"}`
      : `no <resumed/> within 15s (reconnecting ${reconnectingAt !== null}); sm failed: ${failedEls}; status=${sm.status} connection #${connectionNo}`;
    if (!report(resumedEvent && resumedEl?.attrs.previd === smId && onlineEvents === 1 && failedEls.length === 0
        && connectionNo === 2 && sm.status === "online" && sm.jid.toString() === full && SM.enabled,
      `${label} xmpp.js reconnects by itself and resumes (stream-management 'resumed', same previd, no new session, full JID ${full} unchanged)`,
      detail)) return;
    const h = Number(resumedEl.attrs.h);
    const resentByUs = qAtCut.slice(Math.max(0, h - outboundAtCut));

    try {
      const reply = await sm.iqCaller.request(xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })), STEP_TIMEOUT);
      report(reply.attrs.to === full, `${label} after resumption the server addresses us as ${full} (ping result 'to')`, `to=${reply.attrs.to}`);
    } catch (err) {
      report(false, `${label} ping after resumption`, String(err?.condition ?? err?.message ?? err));
    }

    for (const i of after) await sendNumbered(i);
    await waitNumbers(range(1, n), STEP_TIMEOUT);
    const got = numbers();
    const missing = range(1, n).filter((i) => !got.has(i));
    const counts = {};
    for (const x of numbered) counts[x.num] = (counts[x.num] ?? 0) + 1;
    const dups = Object.keys(counts).filter((k) => counts[k] > 1).map(Number);
    const wrongTo = numbered.filter((x) => x.to !== full).map((x) => x.num);
    const onNew = numbered.filter((x) => x.conn > 1 && !after.includes(x.num)).map((x) => x.num);
    const delayed = numbered.filter((x) => x.conn > 1 && x.delay).map((x) => x.num);
    report(missing.length === 0 && wrongTo.length === 0,
      `${label} all ${n} messages arrived (${got.size} unique, ${numbered.length} received in all; before the cut ${ranges(first)}, at the cut ${ranges(atCut)}, outage ${ranges(outage)}, after resumption ${ranges(after)})`,
      `${missing.length ? `missing ${ranges(missing)}; ` : ""}${wrongTo.length ? `'to' not the full JID on ${ranges(wrongTo)}; ` : ""}duplicates ${ranges(dups)}; delivered on the resumed stream from the server's queue (sent before resumption) ${ranges(onNew)}; with <delay/> ${ranges(delayed)}`);
    console.log(`    xep-0198 xmpp.js: resent by the server after <resumed/>: ${ranges(onNew)}; duplicates: ${ranges(dups)}; resent by xmpp.js (its queue after <resumed h='${h}'/>): ${JSON.stringify(resentByUs)}`);

    // The client's messages around the cut reach the peer.
    await waitFor(peer, () => [peer.messages.map((m) => m.getChildText("body"))], (bodies) => outBodies.every((b) => bodies.includes(b)), STEP_TIMEOUT);
    const outCounts = {};
    const outDelay = {};
    for (const b of outBodies) {
      const ms = peer.messages.filter((m) => m.getChildText("body") === b);
      outCounts[b.split(" ")[2]] = ms.length;
      if (ms.some((m) => m.getChild("delay", NS_DELAY))) outDelay[b.split(" ")[2]] = true;
    }
    report(Object.values(outCounts).every((c) => c > 0),
      `${label} the 2 messages xmpp.js sent just before the cut (unacknowledged) reach the peer`,
      `received (out number: times) ${JSON.stringify(outCounts)}; <resumed h='${h}'/>; xmpp.js resent ${JSON.stringify(resentByUs)} (with <delay/>: ${Object.keys(outDelay).join(",") || "none"})`);
  } finally {
    sm.reconnect.stop();
    await Promise.all([stop(sm), stop(peer)]);
  }
}

// A hard deadline for the whole process, whatever hangs.
const deadlineMs = Number(opts.deadline ?? 120) * 1000;
setTimeout(() => {
  report(false, `${opts.mode} finished before the deadline`, `${deadlineMs / 1000}s`);
  if (opts.mode === "rfc6121" && opts.sync) signal("ABORT-frank");
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
  } else if (opts.mode === "sm") {
    await runSm();
    console.log(`xmppjs totals: passed=${passes} failed=${failures}`);
    code = failures ? 1 : 0;
  } else if (opts.mode === "rfc6121") {
    await runRfc6121();
    console.log(`xmppjs totals: passed=${passes} failed=${failures}`);
    code = failures ? 1 : 0;
  } else {
    console.error("usage: xmppjs_check.mjs check|listen|rfc6121|sm ...");
    code = 2;
  }
} catch (err) {
  report(false, `${opts.mode} unexpected error`, err?.stack ?? String(err));
  code = 1;
}
process.exit(code);

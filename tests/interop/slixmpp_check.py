#!/usr/bin/env python3
"""Interop checks of Tern with slixmpp 1.17 (a client nobody on the team wrote).

Five modes:

  check    Runs the scenarios below and prints one `PASS slixmpp ...` or
           `FAIL slixmpp ...` line per check. Exit code 1 if any check failed.
  listen   Logs in one account, sends initial presence, prints `READY <full jid>`
           and waits for a chat/normal message with an expected body (and,
           optionally, an expected sender bare JID). Used to verify what
           go-sendxmpp and xmpp.js send. Exit code 0 when it arrived.
  rfc6121  erin's side of the RFC 6121 scenario with an xmpp.js client (frank,
           `xmppjs_check.mjs rfc6121`, running at the same time; the two meet
           through files in --sync): roster, subscriptions both ways, presence,
           a clean and an abrupt disconnect, an offline message (XEP-0160). See
           run_rfc6121.
  sm       XEP-0198 with slixmpp's xep_0198 plugin: stream management enabled with
           resumption, the TCP connection cut under the client, numbered messages from
           a second account before, at and during the cut and after resumption; all
           must arrive (duplicates reported). See run_sm.
  carbons  XEP-0280 with slixmpp's xep_0280 plugin: two resources of one account
           enable carbons; a third party's message to one and a message from it are
           copied to the other (<received/>, <sent/>), <private/> is not. See
           run_carbons.

Scenarios of `check`:
  * STARTTLS (direct TLS disabled in slixmpp) with SASL forced to SCRAM-SHA-1,
    two clients (alice, bob);
  * direct TLS (XEP-0368; STARTTLS disabled in slixmpp) with SCRAM-SHA-1, two
    clients: alice without ALPN (slixmpp's default) and bob offering ALPN
    `xmpp-client`, which must be the protocol negotiated;
  * STARTTLS with SCRAM-SHA-256, with PLAIN, and with slixmpp's own choice;
  * a wrong password must fail SASL and never open a session;
  * with --extdisco-host, XEP-0215 through raw IQs (run.sh's four services):
    disco#info lists urn:xmpp:extdisco:2; `<services/>` (host/port/transport,
    restricted, TURN REST username/password checked with HMAC-SHA1 here, expires
    about now+ttl); `<services type='turn'/>`; `<credentials/>` for turn at the
    host; item-not-found for an unknown host; the `:1` namespace.

Per pair: login, TLS in use, the SASL mechanism used (the SCRAM server
signature is verified by slixmpp), the bound full JID, a message each way
(alice -> bob's full JID, bob -> alice's bare JID) with body and `from`
verified, XEP-0199 ping of the server, XEP-0030 disco#info of the server
(features), XEP-0092 version and XEP-0202 time of the server.

Every wait has a timeout; the whole script also has a global deadline.
"""

import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import logging
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

STEP_TIMEOUT = 10.0
EXPECTED_FEATURES = [
    "urn:xmpp:ping",
    "jabber:iq:version",
    "urn:xmpp:time",
    "http://jabber.org/protocol/disco#info",
]

NS_EXT2 = "urn:xmpp:extdisco:2"
NS_EXT1 = "urn:xmpp:extdisco:1"
NS_ROSTER = "jabber:iq:roster"
NS_DELAY = "urn:xmpp:delay"
# The services run.sh configures under [modules.external_services] (host, secret and ttl
# come from the command line): (type, transport, port, restricted).
EXTDISCO_SERVICES = [
    ("stun", "udp", 3478, False),
    ("turn", "udp", 3478, True),
    ("turn", "tcp", 3478, True),
    ("turns", "tcp", 5349, True),
]

failures = 0
passes = 0


def report(ok, name, detail=""):
    global failures, passes
    if ok:
        passes += 1
    else:
        failures += 1
    line = "%s slixmpp %s" % ("PASS" if ok else "FAIL", name)
    if detail:
        line += " (%s)" % detail
    print(line, flush=True)
    logging.getLogger("check").info(line)
    return ok


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what happened during login."""

    def __init__(self, jid, password, *, ca, mech=None, direct_tls=False, alpn=False,
                 both=False):
        super().__init__(jid, password, sasl_mech=mech)
        self.ca_certs = Path(ca)
        # With a custom address slixmpp tries direct TLS first, then STARTTLS:
        # pin exactly one so the check proves what it names (unless `both`).
        self.enable_direct_tls = direct_tls or both
        self.enable_starttls = not direct_tls or both
        self.enable_plaintext = False
        if alpn:
            self.ssl_context.set_alpn_protocols(["xmpp-client"])
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0202")
        self.started = self.loop.create_future()
        self.auth_failed = self.loop.create_future()
        self.messages = asyncio.Queue()
        self.mech_used = None
        self.offered_mechs = None
        self.saw_starttls = False
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("stream_negotiated", lambda _e: None)

    def _on_auth_success(self, _stanza):
        mechs = self.plugin["feature_mechanisms"]
        self.mech_used = mechs.mech.name if mechs.mech is not None else None
        self.offered_mechs = sorted(mechs.mech_list)

    def _on_failed_auth(self, stanza):
        if not self.auth_failed.done():
            self.auth_failed.set_result(stanza["condition"])
        self.offered_mechs = sorted(self.plugin["feature_mechanisms"].mech_list)

    def _on_session_start(self, _event):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.put_nowait(msg)

    def tls_info(self):
        sock = self.socket
        version = getattr(sock, "version", lambda: None)()
        alpn = getattr(sock, "selected_alpn_protocol", lambda: None)()
        return version, alpn

    async def close(self):
        try:
            self.cancel_connection_attempt()
            if self.transport is not None:
                await asyncio.wait_for(self.disconnect(wait=1.0), 3.0)
        except Exception:  # noqa: BLE001 - best effort cleanup
            self.abort()


async def login(client, addr, port):
    """Connects and waits for session_start; returns None or an error text."""
    client.connect(addr, port)
    done, _ = await asyncio.wait(
        [client.started, client.auth_failed], timeout=STEP_TIMEOUT,
        return_when=asyncio.FIRST_COMPLETED)
    if client.started.done():
        return None
    if client.auth_failed.done():
        return "SASL failure <%s/>, server offered %s" % (
            client.auth_failed.result(), client.offered_mechs)
    client.cancel_connection_attempt()
    return "no session within %.0fs" % STEP_TIMEOUT


async def expect_message(client, body, sender):
    """Waits for a message with `body`; checks its 'from' equals `sender` (full JID)."""
    try:
        while True:
            msg = await asyncio.wait_for(client.messages.get(), STEP_TIMEOUT)
            if msg["body"] == body:
                break
    except asyncio.TimeoutError:
        return False, "no message with the expected body within %.0fs" % STEP_TIMEOUT
    if str(msg["from"]) != str(sender):
        return False, "from=%r, expected %r" % (str(msg["from"]), str(sender))
    if msg["to"] and JID(msg["to"]).bare != client.boundjid.bare:
        return False, "to=%r" % str(msg["to"])
    return True, "from=%s" % msg["from"]


async def server_checks(client, label, domain):
    # XEP-0199: ping the server. slixmpp's ping() treats an error reply from the
    # own server as success, so send the IQ directly and require a result.
    try:
        reply = await client.plugin["xep_0199"].send_ping(JID(domain), timeout=STEP_TIMEOUT)
        report(reply["type"] == "result", "%s ping server (XEP-0199)" % label,
               "reply type %s" % reply["type"])
    except IqError as e:
        report(False, "%s ping server (XEP-0199)" % label, "error %s" % e.iq["error"]["condition"])
    except IqTimeout:
        report(False, "%s ping server (XEP-0199)" % label, "timeout")

    # XEP-0030: disco#info of the server.
    try:
        iq = await client.plugin["xep_0030"].get_info(jid=domain, local=False, cached=False,
                                              timeout=STEP_TIMEOUT)
        features = set(iq["disco_info"]["features"])
        missing = [f for f in EXPECTED_FEATURES if f not in features]
        identities = [tuple(i[:2]) for i in iq["disco_info"]["identities"]]
        has_server_identity = ("server", "im") in identities
        report(not missing and has_server_identity, "%s disco#info of server (XEP-0030)" % label,
               ("missing %s; " % missing if missing else "")
               + ("identities %s" % identities))
    except IqError as e:
        report(False, "%s disco#info of server (XEP-0030)" % label,
               "error %s" % e.iq["error"]["condition"])
    except IqTimeout:
        report(False, "%s disco#info of server (XEP-0030)" % label, "timeout")

    # XEP-0092: software version of the server.
    try:
        iq = await client.plugin["xep_0092"].get_version(JID(domain), timeout=STEP_TIMEOUT)
        name = iq["software_version"]["name"]
        version = iq["software_version"]["version"]
        report(bool(name) and bool(version), "%s version of server (XEP-0092)" % label,
               "name=%r version=%r" % (name, version))
    except IqError as e:
        report(False, "%s version of server (XEP-0092)" % label,
               "error %s" % e.iq["error"]["condition"])
    except IqTimeout:
        report(False, "%s version of server (XEP-0092)" % label, "timeout")

    # XEP-0202: entity time of the server, within a minute of ours.
    try:
        iq = await client.plugin["xep_0202"].get_entity_time(JID(domain), timeout=STEP_TIMEOUT)
        # slixmpp substitutes "now" for a missing <utc/>: read the raw XML instead.
        utc = iq.xml.findtext("{urn:xmpp:time}time/{urn:xmpp:time}utc")
        tzo = iq.xml.findtext("{urn:xmpp:time}time/{urn:xmpp:time}tzo")
        if not utc or not tzo:
            report(False, "%s time of server (XEP-0202)" % label,
                   "utc=%r tzo=%r" % (utc, tzo))
        else:
            their = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00"))
            now = datetime.datetime.now(datetime.timezone.utc)
            skew = abs((their - now).total_seconds())
            report(skew < 60 and utc.endswith("Z"), "%s time of server (XEP-0202)" % label,
                   "utc=%s tzo=%s skew=%.1fs" % (utc, tzo, skew))
    except IqError as e:
        report(False, "%s time of server (XEP-0202)" % label,
               "error %s" % e.iq["error"]["condition"])
    except IqTimeout:
        report(False, "%s time of server (XEP-0202)" % label, "timeout")
    except Exception as e:  # noqa: BLE001 - e.g. an unparsable <utc/>
        report(False, "%s time of server (XEP-0202)" % label, repr(e))


async def pair_scenario(args, label, *, mech, direct_tls, port, full=True):
    """Two clients: login, message both ways, then server queries from the first."""
    alice = Client("%s/sx-%s" % (args.alice, uuid.uuid4().hex[:6]), args.alice_password,
                   ca=args.ca, mech=mech, direct_tls=direct_tls)
    bob = Client("%s/sx-%s" % (args.bob, uuid.uuid4().hex[:6]), args.bob_password,
                 ca=args.ca, mech=mech, direct_tls=direct_tls, alpn=direct_tls)
    try:
        ok = True
        for who, c in (("alice", alice), ("bob", bob)):
            err = await login(c, args.addr, port)
            name = "%s %s login" % (label, who)
            if err:
                report(False, name, err)
                ok = False
                continue
            version, alpn = c.tls_info()
            detail = "mech=%s tls=%s" % (c.mech_used, version)
            if direct_tls:
                detail += " alpn=%s" % alpn
            good = version is not None and (mech is None or c.mech_used == mech)
            report(good, name, detail + " offered=%s" % ",".join(c.offered_mechs or []))
            if direct_tls and c is bob:
                report(alpn == "xmpp-client", "%s bob ALPN xmpp-client negotiated" % label,
                       "selected %r" % alpn)
            bound = c.boundjid
            report(bound.bare == JID(c.requested_jid).bare and bool(bound.resource),
                   "%s %s bind" % (label, who), "bound %s" % bound)
        if not ok:
            return
        if not full:
            return

        # alice -> bob's full JID; bob -> alice's bare JID (both sent initial presence).
        body = "hello bob from alice %s" % uuid.uuid4().hex
        alice.send_message(mto=bob.boundjid, mbody=body, mtype="chat")
        good, detail = await expect_message(bob, body, alice.boundjid)
        report(good, "%s message alice->bob (full JID)" % label, detail)

        body = "hello alice from bob %s" % uuid.uuid4().hex
        bob.send_message(mto=JID(alice.boundjid.bare), mbody=body, mtype="chat")
        good, detail = await expect_message(alice, body, bob.boundjid)
        report(good, "%s message bob->alice (bare JID)" % label, detail)

        await server_checks(alice, label, args.domain)
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)


async def single_login(args, label, *, mech, port, both=False):
    c = Client("%s/sx-%s" % (args.alice, uuid.uuid4().hex[:6]), args.alice_password,
               ca=args.ca, mech=mech, both=both)
    try:
        err = await login(c, args.addr, port)
        if err:
            report(False, label, err)
            return
        version, _ = c.tls_info()
        good = version is not None and (mech is None or c.mech_used == mech)
        report(good, label, "mech=%s tls=%s offered=%s" % (
            c.mech_used, version, ",".join(c.offered_mechs or [])))
        # Something must work after login: a ping of the server.
        try:
            reply = await c.plugin["xep_0199"].send_ping(JID(args.domain), timeout=STEP_TIMEOUT)
            report(reply["type"] == "result", label + " then ping")
        except (IqError, IqTimeout) as e:
            report(False, label + " then ping", repr(e))
    finally:
        await c.close()


async def wrong_password(args, port):
    label = "starttls scram-sha-1 wrong password rejected"
    c = Client("%s/sx-bad" % args.alice, args.alice_password + "-wrong", ca=args.ca,
               mech="SCRAM-SHA-1")
    try:
        c.connect(args.addr, port)
        done, _ = await asyncio.wait([c.started, c.auth_failed], timeout=STEP_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if c.started.done():
            report(False, label, "a session was opened with a wrong password")
        elif c.auth_failed.done():
            cond = c.auth_failed.result()
            report(cond == "not-authorized", label, "<%s/>" % cond)
        else:
            report(False, label, "neither failure nor session within %.0fs" % STEP_TIMEOUT)
    finally:
        await c.close()


# ---------------------------------------------------------------- XEP-0215 (raw IQs)

def turn_rest_password(secret, username):
    """The TURN REST password, computed here independently of Tern."""
    return base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


async def raw_iq(client, to, payload):
    """Sends an IQ get with `payload`; returns (reply Iq, None) or (None, error text)."""
    iq = client.make_iq_get(ito=to)
    iq.xml.append(payload)
    try:
        return await iq.send(timeout=STEP_TIMEOUT), None
    except IqError as e:
        return None, "error <%s/> type=%s" % (e.iq["error"]["condition"], e.iq["error"]["type"])
    except IqTimeout:
        return None, "no answer within %.0fs" % STEP_TIMEOUT


def service_attrs(el):
    return {k: v for k, v in el.attrib.items()}


def credential_problems(svc, secret, ttl, now):
    """What is wrong with the TURN REST credentials of one restricted :2 service."""
    problems = []
    username, password, expires = svc.get("username"), svc.get("password"), svc.get("expires")
    if not username or not password:
        return ["no username/password"]
    if svc.get("restricted") != "true":
        problems.append("restricted=%r" % svc.get("restricted"))
    if password != turn_rest_password(secret, username):
        problems.append("password of %r is not base64(HMAC-SHA1(secret, username))" % username)
    if not expires or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", expires):
        problems.append("expires=%r is not ISO-8601 UTC (…Z)" % expires)
        return problems
    exp = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    if abs(exp - (now + ttl)) > 30:
        problems.append("expires %s is now%+.0fs, expected now+%ds" % (expires, exp - now, ttl))
    head = username.split(":", 1)[0]
    if not head.isdigit() or int(head) != int(exp):
        problems.append("username %r does not start with the expiry %d" % (username, int(exp)))
    return problems


def describe_services(services):
    return ", ".join("%s/%s %s:%s" % (s.get("type"), s.get("transport"), s.get("host"),
                                       s.get("port")) for s in services)


async def extdisco_checks(client, label, args):
    host, secret, ttl = args.extdisco_host, args.extdisco_secret, args.extdisco_ttl
    domain = args.domain
    expected = {(t, tr, host, str(port)) for t, tr, port, _ in EXTDISCO_SERVICES}
    restricted_kinds = {(t, tr) for t, tr, _, r in EXTDISCO_SERVICES if r}

    # disco#info of the server advertises XEP-0215.
    reply, err = await raw_iq(client, domain,
                              ET.Element("{http://jabber.org/protocol/disco#info}query"))
    if reply is None:
        report(False, "%s disco#info lists urn:xmpp:extdisco:2" % label, err)
    else:
        features = {f.get("var") for f in reply.xml.iter(
            "{http://jabber.org/protocol/disco#info}feature")}
        report(NS_EXT2 in features, "%s disco#info lists urn:xmpp:extdisco:2" % label,
               "extdisco features: %s" % sorted(f for f in features if "extdisco" in f))

    # <services xmlns='urn:xmpp:extdisco:2'/>: everything.
    now = time.time()
    reply, err = await raw_iq(client, domain, ET.Element("{%s}services" % NS_EXT2))
    services_el = reply.xml.find("{%s}services" % NS_EXT2) if reply is not None else None
    if services_el is None:
        report(False, "%s extdisco:2 services request" % label,
               err or "reply without <services xmlns='%s'/>" % NS_EXT2)
    else:
        services = [service_attrs(s) for s in services_el.findall("{%s}service" % NS_EXT2)]
        got = [(s.get("type"), s.get("transport"), s.get("host"), s.get("port")) for s in services]
        report(len(got) == 4 and set(got) == expected,
               "%s extdisco:2 services: stun/udp, turn/udp, turn/tcp, turns/tcp with host, port, transport"
               % label, describe_services(services))
        stun = [s for s in services if s.get("type") == "stun"]
        stun_ok = (len(stun) == 1 and stun[0].get("restricted") == "false"
                   and not any(k in stun[0] for k in ("username", "password", "expires")))
        report(stun_ok, "%s extdisco:2 stun restricted='false' without credentials" % label,
               "stun: %s" % stun)
        problems = []
        restricted = [s for s in services if (s.get("type"), s.get("transport")) in restricted_kinds]
        for s in restricted:
            for p in credential_problems(s, secret, ttl, now):
                problems.append("%s/%s: %s" % (s.get("type"), s.get("transport"), p))
        report(len(restricted) == 3 and not problems,
               "%s extdisco:2 turn/udp, turn/tcp, turns/tcp restricted='true' with username, "
               "password = base64(HMAC-SHA1(secret, username)), expires now+%ds" % (label, ttl),
               "; ".join(problems) if problems else "e.g. username=%s expires=%s" % (
                   restricted[0].get("username"), restricted[0].get("expires")))

    # <services type='turn'/>: the type is echoed, only turn entries.
    now = time.time()
    el = ET.Element("{%s}services" % NS_EXT2)
    el.set("type", "turn")
    reply, err = await raw_iq(client, domain, el)
    services_el = reply.xml.find("{%s}services" % NS_EXT2) if reply is not None else None
    if services_el is None:
        report(False, "%s extdisco:2 services type='turn'" % label,
               err or "reply without <services xmlns='%s'/>" % NS_EXT2)
    else:
        services = [service_attrs(s) for s in services_el.findall("{%s}service" % NS_EXT2)]
        got = sorted((s.get("type"), s.get("transport")) for s in services)
        problems = [p for s in services for p in credential_problems(s, secret, ttl, now)]
        report(services_el.get("type") == "turn" and got == [("turn", "tcp"), ("turn", "udp")]
               and all(s.get("host") == host for s in services) and not problems,
               "%s extdisco:2 services type='turn': type echoed, only turn/udp and turn/tcp, "
               "with valid credentials" % label,
               "answer type=%r, services %s%s" % (services_el.get("type"), describe_services(services),
                                                  "; " + "; ".join(problems) if problems else ""))

    # <credentials><service type='turn' host=HOST/></credentials>: the two turn services.
    now = time.time()
    el = ET.Element("{%s}credentials" % NS_EXT2)
    q = ET.SubElement(el, "{%s}service" % NS_EXT2)
    q.set("type", "turn")
    q.set("host", host)
    reply, err = await raw_iq(client, domain, el)
    cred_el = reply.xml.find("{%s}credentials" % NS_EXT2) if reply is not None else None
    if cred_el is None:
        report(False, "%s extdisco:2 credentials for turn at %s" % (label, host),
               err or "reply without <credentials xmlns='%s'/>: %s" % (
                   NS_EXT2, ET.tostring(reply.xml).decode() if reply is not None else None))
    else:
        services = [service_attrs(s) for s in cred_el.findall("{%s}service" % NS_EXT2)]
        got = sorted((s.get("type"), s.get("transport"), s.get("host")) for s in services)
        problems = [p for s in services for p in credential_problems(s, secret, ttl, now)]
        report(got == [("turn", "tcp", host), ("turn", "udp", host)] and not problems,
               "%s extdisco:2 credentials for turn at %s: <credentials/> with turn/udp and "
               "turn/tcp, fresh valid credentials" % (label, host),
               "%s%s" % (describe_services(services),
                         "; " + "; ".join(problems) if problems else
                         "; username=%s" % services[0].get("username") if services else ""))

    # A credentials request for a host nobody serves: item-not-found.
    el = ET.Element("{%s}credentials" % NS_EXT2)
    q = ET.SubElement(el, "{%s}service" % NS_EXT2)
    q.set("type", "turn")
    q.set("host", "unknown.example.net")
    reply, err = await raw_iq(client, domain, el)
    report(reply is None and err is not None and "<item-not-found/>" in err,
           "%s extdisco:2 credentials for an unknown host: item-not-found" % label,
           err or "answered with a result: %s" % ET.tostring(reply.xml).decode())

    # The old namespace: answered in :1, without restricted/expires.
    now = time.time()
    reply, err = await raw_iq(client, domain, ET.Element("{%s}services" % NS_EXT1))
    services_el = reply.xml.find("{%s}services" % NS_EXT1) if reply is not None else None
    if services_el is None:
        report(False, "%s extdisco:1 services request" % label,
               err or "reply without <services xmlns='%s'/>: %s" % (
                   NS_EXT1, ET.tostring(reply.xml).decode() if reply is not None else None))
    else:
        services = [service_attrs(s) for s in services_el.findall("{%s}service" % NS_EXT1)]
        got = {(s.get("type"), s.get("transport"), s.get("host"), s.get("port")) for s in services}
        extra = sorted({k for s in services for k in s if k in ("restricted", "expires", "action")})
        v1_creds = [s for s in services if s.get("type") != "stun"]
        bad_creds = [s for s in v1_creds
                     if not s.get("username")
                     or s.get("password") != turn_rest_password(secret, s["username"])]
        report(len(services) == 4 and got == expected and not extra and not bad_creds,
               "%s extdisco:1 services: answered in :1, 4 services, no restricted/expires, "
               "turn credentials valid" % label,
               "%s%s%s" % (describe_services(services),
                           "; has %s" % extra if extra else "",
                           "; bad credentials on %s" % describe_services(bad_creds) if bad_creds else ""))


async def extdisco_scenario(args):
    label = "xep-0215"
    c = Client("%s/sx-%s" % (args.alice, uuid.uuid4().hex[:6]), args.alice_password,
               ca=args.ca, mech="SCRAM-SHA-1")
    try:
        err = await login(c, args.addr, args.starttls_port)
        if err:
            report(False, "%s login" % label, err)
            return
        await extdisco_checks(c, label, args)
    finally:
        await c.close()


async def run_checks(args):
    await pair_scenario(args, "starttls scram-sha-1", mech="SCRAM-SHA-1", direct_tls=False,
                        port=args.starttls_port)
    await pair_scenario(args, "direct-tls scram-sha-1", mech="SCRAM-SHA-1", direct_tls=True,
                        port=args.tls_port)
    await single_login(args, "starttls scram-sha-256 login", mech="SCRAM-SHA-256",
                       port=args.starttls_port)
    await single_login(args, "starttls plain login", mech="PLAIN", port=args.starttls_port)
    await single_login(args, "starttls default mechanism login", mech=None,
                       port=args.starttls_port)
    # slixmpp's default with an explicit host and port: a direct TLS attempt first (on
    # the STARTTLS port, where it must fail fast), then STARTTLS.
    await single_login(args, "starttls port with slixmpp's default order (direct TLS first) login",
                       mech="SCRAM-SHA-1", port=args.starttls_port, both=True)
    await wrong_password(args, args.starttls_port)
    if args.extdisco_host:
        await extdisco_scenario(args)


async def run_listen(args):
    """Waits for one message; prints READY when the session is up."""
    c = Client("%s/listener-%s" % (args.jid, uuid.uuid4().hex[:6]), args.password, ca=args.ca,
               mech=args.mech, direct_tls=args.direct_tls)
    try:
        err = await login(c, args.addr, args.port)
        if err:
            print("ERROR listener login: %s" % err, flush=True)
            return 2
        # Presence is sent in session_start; give the server a moment to mark us available.
        await asyncio.sleep(0.3)
        print("READY %s" % c.boundjid, flush=True)
        deadline = asyncio.get_running_loop().time() + args.timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                print("TIMEOUT no message with body %r" % args.expect_body, flush=True)
                return 1
            try:
                msg = await asyncio.wait_for(c.messages.get(), left)
            except asyncio.TimeoutError:
                continue
            got_from = JID(msg["from"])
            print("GOT from=%s type=%s body=%r" % (got_from, msg["type"], msg["body"]), flush=True)
            if msg["body"].strip() != args.expect_body:
                continue
            if args.expect_from and got_from.bare != args.expect_from:
                print("MISMATCH from bare %s, expected %s" % (got_from.bare, args.expect_from),
                      flush=True)
                return 1
            print("RECEIVED", flush=True)
            return 0
    finally:
        await c.close()


# ---------------------------------------------------------------- RFC 6121 with xmpp.js

class Inbox:
    """Everything of one kind a client received, and a wait for the first match."""

    def __init__(self):
        self.items = []
        self._event = asyncio.Event()

    def push(self, item):
        self.items.append(item)
        self._event.set()

    async def wait(self, pred, timeout=STEP_TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for item in self.items:
                if pred(item):
                    return item
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass


class Sync:
    """Rendezvous with the xmpp.js process through files in a shared folder: `signal`
    writes NAME (atomically), `wait` polls for the peer's. A side that gives up writes
    ABORT-<me>, which ends the other's waits at once."""

    def __init__(self, folder, me):
        self.dir = Path(folder)
        self.me = me

    def signal(self, name, value=""):
        tmp = self.dir / (".%s.tmp" % name)
        tmp.write_text(value)
        tmp.rename(self.dir / name)
        logging.getLogger("sync").info("signal %s %r", name, value)

    async def wait(self, name, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            path = self.dir / name
            if path.exists():
                value = path.read_text()
                logging.getLogger("sync").info("got %s %r", name, value)
                return value
            aborted = [p.name for p in self.dir.glob("ABORT-*") if p.name != "ABORT-" + self.me]
            if aborted or loop.time() > deadline:
                return None
            await asyncio.sleep(0.1)

    def why(self, name, timeout):
        """Why `wait(name)` gave nothing."""
        aborted = sorted(p.name for p in self.dir.glob("ABORT-*") if p.name != "ABORT-" + self.me)
        if aborted:
            return "the other side gave up (%s)" % ", ".join(aborted)
        return "no %s signal within %.0fs" % (name, timeout)


class RosterClient(Client):
    """A Client that fetches its roster before initial presence, leaves subscription
    requests to the script (no auto-authorize, no auto-subscribe) and records every
    presence and roster push it receives."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.presences = Inbox()
        self.pushes = Inbox()
        self.errors = Inbox()
        self.initial_roster = None
        self.add_event_handler("presence", self.presences.push)
        self.add_event_handler("roster_update", self._on_roster_update)
        self.add_event_handler("message_error", self.errors.push)

    def _on_roster_update(self, iq):
        if iq["type"] == "set":
            self.pushes.push(iq)

    async def _on_session_start(self, _event):
        try:
            self.initial_roster = await self.get_roster(timeout=STEP_TIMEOUT)
        except (IqError, IqTimeout) as e:
            self.initial_roster = e
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)


def roster_item(iq, jid):
    """The <item/> for `jid` in a roster result or push (raw XML), or None."""
    for item in iq.xml.iter("{%s}item" % NS_ROSTER):
        if item.get("jid") == jid:
            return item
    return None


def item_text(item):
    if item is None:
        return "no item"
    return "subscription=%s ask=%s name=%s groups=%s" % (
        item.get("subscription"), item.get("ask"), item.get("name"),
        [g.text for g in item.findall("{%s}group" % NS_ROSTER)])


async def run_rfc6121(args):
    """erin (slixmpp) and frank (xmpp.js, xmppjs_check.mjs rfc6121): roster, subscriptions
    both ways, presence, disconnects and an offline message. The steps, with the
    xmpp.js side's in brackets:
      [frank logs in, fetches his roster, sends presence, signals frank-online]
      erin logs in (roster get, presence), signals erin-online, adds frank to her roster,
      subscribes; [frank receives subscribe, sends subscribed and subscribe]; erin
      receives subscribed, then subscribe and approves with slixmpp's roster; both rosters
      say both; each sees the other available; erin signals erin-both;
      [frank waits for erin-both, disconnects cleanly, signals frank-offline]
      erin receives frank's unavailable, sends a chat message to frank's bare JID,
      signals erin-sent-offline; [frank logs in again, gets the message with a delay
      after his initial presence, signals frank-back]; erin sees frank's new resource,
      drops her TCP connection (no </stream>, no TLS close_notify) and signals erin-gone;
      [frank receives erin's unavailable]."""
    sync = Sync(args.sync, "erin")
    peer = args.peer
    label = "rfc6121"
    erin = RosterClient("%s/sx-erin-%s" % (args.jid, uuid.uuid4().hex[:6]), args.password,
                        ca=args.ca, mech="SCRAM-SHA-1")
    completed = False
    try:
        err = await login(erin, args.addr, args.port)
        if not report(err is None, "%s erin login (STARTTLS)" % label, err or "bound %s" % erin.boundjid):
            return
        initial = erin.initial_roster
        report(not isinstance(initial, Exception) and initial is not None
               and not list(initial.xml.iter("{%s}item" % NS_ROSTER)),
               "%s erin roster get before initial presence: empty" % label,
               repr(initial) if isinstance(initial, Exception) else
               ("%d item(s)" % len(list(initial.xml.iter("{%s}item" % NS_ROSTER)))
                if initial is not None else "no answer"))
        sync.signal("erin-online", str(erin.boundjid))

        frank1 = await sync.wait("frank-online", 40)
        if not report(frank1 is not None, "%s xmpp.js side (frank) online" % label,
                      "frank %s" % frank1 if frank1 else sync.why("frank-online", 40)):
            return
        frank1 = JID(frank1)

        # erin adds frank to her roster: roster set, then a push.
        try:
            await erin.update_roster(JID(peer), name="Frank", groups=["interop"],
                                     timeout=STEP_TIMEOUT)
            set_err = None
        except (IqError, IqTimeout) as e:
            set_err = repr(e)
        push = await erin.pushes.wait(lambda iq: roster_item(iq, peer) is not None)
        item = roster_item(push, peer) if push is not None else None
        report(set_err is None and item is not None and item.get("subscription") in (None, "none")
               and item.get("name") == "Frank",
               "%s erin adds frank to her roster (roster set answered, push with "
               "subscription='none')" % label, set_err or item_text(item))

        # erin subscribes through slixmpp's roster.
        erin.client_roster[peer].subscribe()
        push = await erin.pushes.wait(
            lambda iq: (roster_item(iq, peer) is not None
                        and roster_item(iq, peer).get("ask") == "subscribe"))
        report(push is not None, "%s erin's subscribe: roster push with ask='subscribe'" % label,
               item_text(roster_item(push, peer)) if push is not None else
               "pushes: %s" % [item_text(roster_item(p, peer)) for p in erin.pushes.items])

        # frank approves and subscribes back.
        p = await erin.presences.wait(
            lambda p: p["type"] == "subscribed" and JID(p["from"]).bare == peer, 30)
        report(p is not None and str(p["from"]) == peer,
               "%s erin receives frank's subscribed (from his bare JID)" % label,
               "from=%s" % p["from"] if p is not None else "none within 30s")
        push = await erin.pushes.wait(
            lambda iq: (roster_item(iq, peer) is not None
                        and roster_item(iq, peer).get("subscription") == "to"))
        report(push is not None, "%s erin roster push subscription='to' after subscribed" % label,
               item_text(roster_item(push, peer)) if push is not None else
               "pushes: %s" % [item_text(roster_item(p, peer)) for p in erin.pushes.items])

        p = await erin.presences.wait(
            lambda p: p["type"] == "subscribe" and JID(p["from"]).bare == peer)
        report(p is not None and str(p["from"]) == peer,
               "%s erin receives frank's subscribe (from his bare JID)" % label,
               "from=%s" % p["from"] if p is not None else "none")
        if p is not None:
            # Approved with slixmpp's roster (auto_authorize is off): sends subscribed.
            erin.client_roster[peer].authorize()
        push = await erin.pushes.wait(
            lambda iq: (roster_item(iq, peer) is not None
                        and roster_item(iq, peer).get("subscription") == "both"))
        report(push is not None, "%s erin roster push subscription='both' after approving" % label,
               item_text(roster_item(push, peer)) if push is not None else
               "pushes: %s" % [item_text(roster_item(p, peer)) for p in erin.pushes.items])

        p = await erin.presences.wait(
            lambda p: p["type"] in ("available",) + tuple(p.showtypes) and p["from"] == frank1)
        report(p is not None, "%s erin sees frank available (presence from %s)" % (label, frank1),
               "type=%s" % p["type"] if p is not None else "presences: %s" % [
                   (str(x["from"]), x["type"]) for x in erin.presences.items])

        # A plain roster get: slixmpp's get_roster() sends its roster version, and the
        # answer to a current version is rightly empty (XEP-0237).
        result, err = await raw_iq(erin, None, ET.Element("{%s}query" % NS_ROSTER))
        if result is None:
            report(False, "%s erin roster get" % label, err)
        else:
            item = roster_item(result, peer)
            report(item is not None and item.get("subscription") == "both"
                   and item.get("ask") is None and item.get("name") == "Frank",
                   "%s erin roster get: frank subscription='both', no ask, name kept" % label,
                   item_text(item))
        ri = erin.client_roster[peer]
        report(ri["subscription"] == "both" and not ri["pending_out"] and not ri["pending_in"]
               and frank1.resource in ri.resources,
               "%s slixmpp roster plugin: frank subscription both, nothing pending, "
               "resource %s online" % (label, frank1.resource),
               "subscription=%s pending_out=%s pending_in=%s resources=%s" % (
                   ri["subscription"], ri["pending_out"], ri["pending_in"], list(ri.resources)))
        sync.signal("erin-both", "done")

        # frank disconnects cleanly: erin receives unavailable from his full JID.
        p = await erin.presences.wait(
            lambda p: p["type"] == "unavailable" and p["from"] == frank1, 40)
        report(p is not None,
               "%s erin receives unavailable from %s (xmpp.js closed its stream cleanly)"
               % (label, frank1),
               "received" if p is not None else "presences from frank: %s" % [
                   (str(x["from"]), x["type"]) for x in erin.presences.items
                   if JID(x["from"]).bare == peer])
        if p is None:
            return
        report(frank1.resource not in ri.resources,
               "%s slixmpp roster plugin: frank's resource gone" % label,
               "resources=%s" % list(ri.resources))

        # A chat message while frank is offline.
        body = "offline hello frank %s" % uuid.uuid4().hex
        sent = time.time()
        erin.send_message(mto=JID(peer), mbody=body, mtype="chat")
        # A ping round trip: the message was processed before we tell frank.
        try:
            await erin.plugin["xep_0199"].send_ping(JID(args.domain), timeout=STEP_TIMEOUT)
        except (IqError, IqTimeout):
            pass
        bounced = await erin.errors.wait(lambda m: True, 0.5)
        report(bounced is None, "%s erin's message to offline frank accepted (no error bounce)"
               % label, "bounce: %s" % bounced if bounced is not None else "body %r" % body)
        sync.signal("erin-sent-offline", json.dumps(
            {"body": body, "from": str(erin.boundjid), "sent": sent}))

        frank2 = await sync.wait("frank-back", 40)
        if not report(frank2 is not None, "%s frank back online (xmpp.js side)" % label,
                      frank2 or sync.why("frank-back", 40)):
            return
        frank2 = JID(frank2)
        p = await erin.presences.wait(
            lambda p: p["type"] in ("available",) + tuple(p.showtypes) and p["from"] == frank2)
        report(p is not None, "%s erin sees frank come online again (presence from %s)"
               % (label, frank2),
               "received" if p is not None else "presences from frank: %s" % [
                   (str(x["from"]), x["type"]) for x in erin.presences.items
                   if JID(x["from"]).bare == peer])

        # erin's connection is cut: no </stream>, no TLS close_notify, just the TCP
        # connection closed (asyncio's transport.abort()). frank must still hear of it.
        full = str(erin.boundjid)
        erin.transport.abort()
        sync.signal("erin-gone", full)
        completed = True
    finally:
        if not completed:
            sync.signal("ABORT-erin")
            await erin.close()


# ---------------------------------------------------------------- XEP-0198 stream management

NS_SM = "urn:xmpp:sm:3"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"


class SmClient(Client):
    """A Client with slixmpp's XEP-0198 plugin (resumption requested, its default) that
    records every numbered message it receives with the number of the TCP connection it
    arrived on, and the stream management events."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.register_plugin("xep_0198")
        self.connection_no = 1
        self.numbered = []  # (number, connection_no, delay stamp or None, to, id)
        self.numbered_event = asyncio.Event()
        self.enabled_stanza = None
        self.resumed_stanza = None
        self.resumed_event = asyncio.Event()
        self.sm_failed = []
        self.session_starts = 0
        self.session_ends = 0
        self.disconnected_event = asyncio.Event()
        self.resent_by_us = None
        self.add_event_handler("sm_enabled", self._on_sm_enabled)
        self.add_event_handler("session_resumed", self._on_session_resumed)
        self.add_event_handler("sm_failed", lambda st: self.sm_failed.append(str(st)))
        self.add_event_handler("session_start", self._count_start)
        self.add_event_handler("session_end", self._count_end)
        self.add_event_handler("disconnected", lambda _e: self.disconnected_event.set())
        self.add_event_handler("connected", self._on_connected)
        self.tag = None

    def _count_start(self, _e):
        self.session_starts += 1

    def _count_end(self, _e):
        self.session_ends += 1

    def _on_connected(self, _e):
        if self.disconnected_event.is_set():
            self.connection_no += 1

    def _on_sm_enabled(self, stanza):
        self.enabled_stanza = stanza

    def _on_session_resumed(self, stanza):
        self.resumed_stanza = stanza
        # slixmpp resent what is still in its queue after <resumed h/> (kept there
        # until acknowledged).
        self.resent_by_us = [st["body"] for _seq, st in self.plugin["xep_0198"].unacked_queue
                             if isinstance(st, slixmpp.Message)]
        self.resumed_event.set()

    def _on_message(self, msg):
        super()._on_message(msg)
        body = msg["body"] or ""
        m = re.fullmatch(r"sm (\d+)/(\d+) (\S+)", body)
        if m and m.group(3) == self.tag:
            delay = msg.xml.find("{%s}delay" % NS_DELAY)
            self.numbered.append((int(m.group(1)), self.connection_no,
                                  delay.get("stamp") if delay is not None else None,
                                  str(msg["to"]), msg["id"]))
            self.numbered_event.set()

    def numbers(self):
        return {n for n, *_ in self.numbered}

    async def wait_numbers(self, wanted, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not set(wanted) <= self.numbers():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self.numbered_event.clear()
            try:
                await asyncio.wait_for(self.numbered_event.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True


def ranges(numbers):
    """[1, 2, 3, 5] -> '#1-3, #5'."""
    numbers = sorted(numbers)
    out = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append("#%d" % numbers[i] if i == j else "#%d-%d" % (numbers[i], numbers[j]))
        i = j + 1
    return ", ".join(out) or "none"


async def run_sm(args):
    """XEP-0198 with slixmpp's xep_0198 plugin. The client (--jid) logs in and enables
    stream management with resumption; a second client (--peer) sends it --count numbered
    chat messages to its full JID: a first batch before the cut (all received), a few
    right at the cut, a batch during the outage (after slixmpp noticed the lost
    connection), the rest after resumption. The TCP connection is cut under the client:
    shutdown(SHUT_RDWR) on the socket below the TLS layer, no </stream>, no TLS
    close_notify, nothing slixmpp asked for. The client's disconnected handler reconnects
    (as applications do) once the outage batch is out; slixmpp resumes the session
    (<resume previd h/>). Every number must arrive at least once (duplicates are
    allowed by XEP-0198's resends, and reported); the messages the client sent around
    the cut must reach the peer."""
    label = "xep-0198"
    n = args.count
    tag = uuid.uuid4().hex[:8]
    sm = SmClient("%s/sx-sm-%s" % (args.jid, tag[:6]), args.password, ca=args.ca,
                  mech="SCRAM-SHA-1")
    sm.tag = tag
    peer = Client("%s/sx-peer-%s" % (args.peer, tag[:6]), args.peer_password, ca=args.ca,
                  mech="SCRAM-SHA-1")
    peer_errors = Inbox()
    peer.add_event_handler("message_error", peer_errors.push)
    try:
        for who, c in (("client", sm), ("peer", peer)):
            err = await login(c, args.addr, args.port)
            if not report(err is None, "%s %s login (STARTTLS)" % (label, who),
                          err or "bound %s" % c.boundjid):
                return
        plugin = sm.plugin["xep_0198"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_TIMEOUT
        while sm.enabled_stanza is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        en = sm.enabled_stanza
        resume_attr = en.xml.get("resume") if en is not None else None
        report(en is not None and resume_attr in ("true", "1") and bool(en["id"])
               and plugin.sm_id == en["id"] and plugin.enabled_in and plugin.enabled_out
               and not sm.end_session_on_disconnect,
               "%s stream management enabled with resumption (<enabled resume='true' id/>; "
               "plugin sm_id set, enabled in and out)" % label,
               "no <enabled/> within %.0fs" % STEP_TIMEOUT if en is None else
               "resume=%r id=%r max=%r; plugin sm_id=%r enabled_in=%s enabled_out=%s" % (
                   resume_attr, en["id"], en.xml.get("max"), plugin.sm_id, plugin.enabled_in,
                   plugin.enabled_out))
        if en is None or not plugin.sm_id:
            return
        full = JID(sm.boundjid)
        sent_at = {}

        def send_numbered(i):
            peer.send_message(mto=full, mbody="sm %d/%d %s" % (i, n, tag), mtype="chat")
            sent_at[i] = "before-cut"

        first = list(range(1, n // 3 + 1))
        at_cut = list(range(first[-1] + 1, first[-1] + 4))
        outage = list(range(at_cut[-1] + 1, at_cut[-1] + 1 + n // 3))
        after = list(range(outage[-1] + 1, n + 1))

        for i in first:
            send_numbered(i)
        ok = await sm.wait_numbers(first, STEP_TIMEOUT)
        report(ok, "%s messages %s received before the cut" % (label, ranges(first)),
               "got %s" % ranges(sm.numbers()))

        # In flight at the cut: slixmpp stops reading (as on a stalled network), the peer
        # sends #7-9, which the server writes to the connection but the client never
        # handles; the client sends two messages the server receives (not acknowledged
        # yet: slixmpp asks for acks every 5 stanzas). Then the cut, and two more
        # messages from the client, which fail on the dead socket (that is how slixmpp
        # notices the loss).
        out_bodies = ["sm out %d %s" % (i, tag) for i in (1, 2, 3, 4)]
        sm.transport.pause_reading()
        for i in at_cut:
            send_numbered(i)
        for b in out_bodies[:2]:
            sm.send_message(mto=JID(peer.boundjid), mbody=b, mtype="chat")
        await asyncio.sleep(0.5)
        # The cut: the TCP socket below TLS is shut down in both directions.
        raw = sm.transport.get_extra_info("socket")
        raw.shutdown(socket.SHUT_RDWR)
        for b in out_bodies[2:]:
            sm.send_message(mto=JID(peer.boundjid), mbody=b, mtype="chat")
        try:
            await asyncio.wait_for(sm.disconnected_event.wait(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            pass
        unacked = [st["body"].split()[2] for _seq, st in plugin.unacked_queue
                   if isinstance(st, slixmpp.Message)]
        report(sm.disconnected_event.is_set() and sm.session_ends == 0,
               "%s TCP connection cut under slixmpp (socket.shutdown(SHUT_RDWR) below TLS, "
               "reading paused before): disconnected, session kept for resumption (no "
               "session_end)" % label,
               "disconnected=%s session_end events=%d; slixmpp's unacknowledged messages: out "
               "%s; handled before the cut: %d stanza(s), %s" % (
                   sm.disconnected_event.is_set(), sm.session_ends, unacked, plugin.handled,
                   ranges(sm.numbers())))
        if not sm.disconnected_event.is_set():
            return

        # The outage batch, then a ping round trip: the server has handled them all.
        for i in outage:
            send_numbered(i)
        try:
            await peer.plugin["xep_0199"].send_ping(JID(args.domain), timeout=STEP_TIMEOUT)
        except (IqError, IqTimeout):
            pass
        await asyncio.sleep(0.5)
        bounced = [str(x["id"]) + ":" + str(x["error"]["condition"]) for x in peer_errors.items]
        report(not bounced,
               "%s messages %s sent during the outage accepted by the server (no error bounce)"
               % (label, ranges(outage)), "bounces: %s" % bounced if bounced else "")

        # The client reconnects, as an application's disconnected handler does.
        connects_before = sm.connection_no
        sm.connect(args.addr, args.port)
        try:
            await asyncio.wait_for(sm.resumed_event.wait(), 15)
        except asyncio.TimeoutError:
            pass
        rs = sm.resumed_stanza
        detail = ("<resumed previd=%r h=%r/>; session_start events=%d, sm_failed=%s, "
                  "connection #%d, bound %s" % (
                      rs.xml.get("previd"), rs.xml.get("h"), sm.session_starts, sm.sm_failed,
                      sm.connection_no, sm.boundjid) if rs is not None else
                  "no <resumed/> within 15s; sm_failed=%s session_start events=%d "
                  "connection #%d" % (sm.sm_failed, sm.session_starts, sm.connection_no))
        if not report(rs is not None and rs.xml.get("previd") == en["id"]
                      and sm.session_starts == 1 and not sm.sm_failed
                      and sm.connection_no == connects_before + 1
                      and str(sm.boundjid) == str(full),
                      "%s slixmpp reconnects and resumes (session_resumed, same previd, no new "
                      "session, full JID %s unchanged)" % (label, full), detail):
            return
        # The server's view of our full JID: the 'to' of its answer to a ping.
        try:
            reply = await sm.plugin["xep_0199"].send_ping(JID(args.domain), timeout=STEP_TIMEOUT)
            report(str(reply["to"]) == str(full),
                   "%s after resumption the server addresses us as %s (ping result 'to')"
                   % (label, full), "to=%s" % reply["to"])
        except (IqError, IqTimeout) as e:
            report(False, "%s ping after resumption" % label, repr(e))

        for i in after:
            send_numbered(i)
        await sm.wait_numbers(range(1, n + 1), STEP_TIMEOUT)
        got = sm.numbers()
        missing = sorted(set(range(1, n + 1)) - got)
        counts = {}
        for num, *_ in sm.numbered:
            counts[num] = counts.get(num, 0) + 1
        dups = sorted(k for k, v in counts.items() if v > 1)
        wrong_to = sorted({num for num, _c, _d, to, _i in sm.numbered if to != str(full)})
        on_new = sorted({num for num, c, *_ in sm.numbered if c > 1 and num not in after})
        delayed = sorted({num for num, c, d, *_ in sm.numbered if c > 1 and d})
        report(not missing and not wrong_to,
               "%s all %d messages arrived (%d unique, %d received in all; before the cut "
               "%s, at the cut %s, outage %s, after resumption %s)" % (
                   label, n, len(got), len(sm.numbered), ranges(first), ranges(at_cut),
                   ranges(outage), ranges(after)),
               ("missing %s; " % ranges(missing) if missing else "")
               + ("'to' not the full JID on %s; " % ranges(wrong_to) if wrong_to else "")
               + "duplicates %s; delivered on the resumed stream from the server's queue "
                 "(sent before resumption) %s; with <delay/> %s" % (
                     ranges(dups), ranges(on_new), ranges(delayed)))
        print("    xep-0198 slixmpp: resent by the server after <resumed/>: %s; duplicates: %s; "
              "resent by slixmpp (its queue after <resumed h/>): %s" % (
                  ranges(on_new), ranges(dups), sm.resent_by_us), flush=True)

        # The client's own messages from around the cut reach the peer: out 1-2 were
        # received by the server before the cut (its <resumed h/> should count them),
        # out 3-4 died with the socket and are resent by slixmpp after <resumed/>.
        deadline = loop.time() + STEP_TIMEOUT
        seen = []
        while loop.time() < deadline:
            while not peer.messages.empty():
                seen.append(peer.messages.get_nowait()["body"])
            if all(b in seen for b in out_bodies):
                break
            await asyncio.sleep(0.1)
        counts = {b.split()[2]: seen.count(b) for b in out_bodies}
        report(all(counts.values()),
               "%s the 4 messages slixmpp sent around the cut reach the peer (out 1-2 before "
               "it, out 3-4 into the dead socket)" % label,
               "received (out number: times) %s; <resumed h=%s/>; slixmpp resent after "
               "<resumed/>: %s" % (counts, rs.xml.get("h"),
                                   [b.split()[2] for b in sm.resent_by_us or []]))
    finally:
        await asyncio.gather(sm.close(), peer.close(), return_exceptions=True)


# ---------------------------------------------------------------- XEP-0280 carbons

class CarbonsClient(Client):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.register_plugin("xep_0280")
        self.carbons = Inbox()  # ("received" | "sent", wrapper message)
        self.all_messages = Inbox()
        self.add_event_handler("carbon_received", lambda m: self.carbons.push(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.push(("sent", m)))
        self.add_event_handler("message", self.all_messages.push)


def carbon_inner(kind, wrapper):
    """The forwarded <message/> of a carbon (raw XML), or None."""
    return wrapper.xml.find("{%s}%s/{%s}forwarded/{jabber:client}message" % (
        NS_CARBONS, kind, NS_FORWARD))


def describe_carbon(kind, wrapper):
    inner = carbon_inner(kind, wrapper)
    if inner is None:
        return "wrapper from=%s to=%s without a forwarded message" % (wrapper["from"], wrapper["to"])
    return "wrapper from=%s to=%s; forwarded from=%s to=%s type=%s body=%r" % (
        wrapper["from"], wrapper["to"], inner.get("from"), inner.get("to"), inner.get("type"),
        inner.findtext("{jabber:client}body"))


async def run_carbons(args):
    """XEP-0280 with slixmpp's xep_0280 plugin: two resources of --jid (A and B) enable
    carbons; --peer (C) writes to A's full JID: A gets the message, B a <received/>
    carbon from the account's bare JID with the original message forwarded; A writes to
    C: B gets a <sent/> carbon. A message A marks <private/> (with <no-copy/>) is not
    copied to B."""
    label = "xep-0280"
    tag = uuid.uuid4().hex[:6]
    a = CarbonsClient("%s/sx-carbons-a-%s" % (args.jid, tag), args.password, ca=args.ca,
                      mech="SCRAM-SHA-1")
    b = CarbonsClient("%s/sx-carbons-b-%s" % (args.jid, tag), args.password, ca=args.ca,
                      mech="SCRAM-SHA-1")
    c = CarbonsClient("%s/sx-carbons-c-%s" % (args.peer, tag), args.peer_password, ca=args.ca,
                      mech="SCRAM-SHA-1")
    bare = JID(args.jid).bare
    try:
        for who, cl in (("A", a), ("B", b), ("C (third party)", c)):
            err = await login(cl, args.addr, args.port)
            if not report(err is None, "%s %s login" % (label, who),
                          err or "bound %s" % cl.boundjid):
                return
        # disco#info of the server advertises carbons.
        reply, err = await raw_iq(a, args.domain,
                                  ET.Element("{http://jabber.org/protocol/disco#info}query"))
        features = set() if reply is None else {f.get("var") for f in reply.xml.iter(
            "{http://jabber.org/protocol/disco#info}feature")}
        report(NS_CARBONS in features, "%s server disco#info lists %s" % (label, NS_CARBONS),
               err or "")
        for who, cl in (("A", a), ("B", b)):
            try:
                r = await cl.plugin["xep_0280"].enable(timeout=STEP_TIMEOUT)
                report(r["type"] == "result", "%s %s enables carbons (xep_0280 enable: "
                       "iq result)" % (label, who))
            except IqError as e:
                report(False, "%s %s enables carbons" % (label, who),
                       "error <%s/>" % e.iq["error"]["condition"])
                return
            except IqTimeout:
                report(False, "%s %s enables carbons" % (label, who), "timeout")
                return

        # C -> A's full JID: B gets a received carbon.
        body = "carbons to A %s" % uuid.uuid4().hex
        c.send_message(mto=a.boundjid, mbody=body, mtype="chat")
        good, detail = await expect_message(a, body, c.boundjid)
        report(good, "%s C -> A's full JID: A receives the message" % label, detail)
        got = await b.carbons.wait(
            lambda x: x[0] == "received" and carbon_inner("received", x[1]) is not None
            and carbon_inner("received", x[1]).findtext("{jabber:client}body") == body)
        if got is None:
            report(False, "%s B gets a <received/> carbon of C -> A" % label,
                   "carbons at B: %s; messages at B: %s" % (
                       [describe_carbon(k, m) for k, m in b.carbons.items],
                       [str(m) for m in b.all_messages.items][-3:]))
        else:
            w = got[1]
            inner = carbon_inner("received", w)
            fwd = w["carbon_received"]
            report(str(w["from"]) == bare and str(w["to"]) == str(b.boundjid)
                   and inner.get("from") == str(c.boundjid) and inner.get("to") == str(a.boundjid)
                   and inner.get("type") == "chat" and str(fwd["body"]) == body,
                   "%s B gets a <received/> carbon (slixmpp carbon_received): wrapper from the "
                   "bare JID to B, forwarded message from C's full JID to A's full JID with the "
                   "original body" % label, describe_carbon("received", w))
        stray = [describe_carbon(k, m) for k, m in a.carbons.items]
        report(not stray, "%s A (the addressee) gets no carbon of it" % label,
               "carbons at A: %s" % stray if stray else "")

        # A -> C: B gets a sent carbon.
        body = "carbons from A %s" % uuid.uuid4().hex
        a.send_message(mto=JID(c.boundjid.bare), mbody=body, mtype="chat")
        good, detail = await expect_message(c, body, a.boundjid)
        report(good, "%s A -> C's bare JID: C receives the message" % label, detail)
        got = await b.carbons.wait(
            lambda x: x[0] == "sent" and carbon_inner("sent", x[1]) is not None
            and carbon_inner("sent", x[1]).findtext("{jabber:client}body") == body)
        if got is None:
            report(False, "%s B gets a <sent/> carbon of A -> C" % label,
                   "carbons at B: %s" % [describe_carbon(k, m) for k, m in b.carbons.items])
        else:
            w = got[1]
            inner = carbon_inner("sent", w)
            fwd = w["carbon_sent"]
            report(str(w["from"]) == bare and str(w["to"]) == str(b.boundjid)
                   and inner.get("from") == str(a.boundjid)
                   and inner.get("to") == c.boundjid.bare
                   and inner.get("type") == "chat" and str(fwd["body"]) == body,
                   "%s B gets a <sent/> carbon (slixmpp carbon_sent): wrapper from the bare JID "
                   "to B, forwarded message from A's full JID to C's bare JID with the body"
                   % label, describe_carbon("sent", w))
        stray = [describe_carbon(k, m) for k, m in a.carbons.items]
        report(not stray, "%s A (the sender) gets no carbon of its own message" % label,
               "carbons at A: %s" % stray if stray else "")

        # A -> C marked private: no carbon at B.
        body = "carbons private %s" % uuid.uuid4().hex
        msg = a.make_message(mto=JID(c.boundjid.bare), mbody=body, mtype="chat")
        ET.SubElement(msg.xml, "{%s}private" % NS_CARBONS)
        ET.SubElement(msg.xml, "{urn:xmpp:hints}no-copy")
        msg.send()
        good, detail = await expect_message(c, body, a.boundjid)
        report(good, "%s A -> C with <private/>: C receives it" % label, detail)
        await asyncio.sleep(1.0)
        copied = [describe_carbon(k, m) for k, m in b.carbons.items
                  if carbon_inner(k, m) is not None
                  and carbon_inner(k, m).findtext("{jabber:client}body") == body]
        report(not copied, "%s A -> C with <private/>: no carbon at B" % label,
               "carbons: %s" % copied if copied else "none within 1 s")
    finally:
        await asyncio.gather(a.close(), b.close(), c.close(), return_exceptions=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default="127.0.0.1", help="address to connect to")
    p.add_argument("--domain", default="localhost", help="XMPP domain of the server")
    p.add_argument("--ca", required=True, help="PEM file of the CA (the server's cert)")
    p.add_argument("--log", help="write slixmpp debug logs (the XML exchange) here")
    p.add_argument("--deadline", type=float, default=120.0, help="whole-run timeout, seconds")
    sub = p.add_subparsers(dest="mode", required=True)

    c = sub.add_parser("check")
    c.add_argument("--starttls-port", type=int, required=True)
    c.add_argument("--tls-port", type=int, required=True)
    c.add_argument("--alice", default="alice@localhost")
    c.add_argument("--alice-password", required=True)
    c.add_argument("--bob", default="bob@localhost")
    c.add_argument("--bob-password", required=True)
    c.add_argument("--extdisco-host", help="XEP-0215: the configured services' host "
                   "(no XEP-0215 checks without it)")
    c.add_argument("--extdisco-secret", default="interop-secret")
    c.add_argument("--extdisco-ttl", type=int, default=600)

    lp = sub.add_parser("listen")
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--direct-tls", action="store_true")
    lp.add_argument("--jid", required=True, help="bare JID to log in as")
    lp.add_argument("--password", required=True)
    lp.add_argument("--mech", default="SCRAM-SHA-1")
    lp.add_argument("--expect-body", required=True)
    lp.add_argument("--expect-from", help="bare JID the message must come from")
    lp.add_argument("--timeout", type=float, default=30.0)
    rp = sub.add_parser("rfc6121", help="erin's side of the RFC 6121 scenario with xmpp.js")
    rp.add_argument("--port", type=int, required=True, help="STARTTLS port")
    rp.add_argument("--jid", required=True, help="erin's bare JID")
    rp.add_argument("--password", required=True)
    rp.add_argument("--peer", required=True, help="frank's bare JID (the xmpp.js side)")
    rp.add_argument("--sync", required=True, help="folder shared with the xmpp.js side")
    for name, helptext in (("sm", "XEP-0198: resumption after a cut TCP connection"),
                           ("carbons", "XEP-0280: two resources and a third party")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--port", type=int, required=True, help="STARTTLS port")
        sp.add_argument("--jid", required=True, help="bare JID of the client under test")
        sp.add_argument("--password", required=True)
        sp.add_argument("--peer", required=True, help="bare JID of the other party")
        sp.add_argument("--peer-password", required=True)
        if name == "sm":
            sp.add_argument("--count", type=int, default=20, help="numbered messages (>= 9)")
    args = p.parse_args()

    if args.log:
        logging.basicConfig(filename=args.log, level=logging.DEBUG,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    else:
        logging.basicConfig(level=logging.CRITICAL)

    async def guarded():
        try:
            if args.mode == "check":
                await asyncio.wait_for(run_checks(args), args.deadline)
                return 0
            if args.mode == "rfc6121":
                await asyncio.wait_for(run_rfc6121(args), args.deadline)
                return 0
            if args.mode == "sm":
                await asyncio.wait_for(run_sm(args), args.deadline)
                return 0
            if args.mode == "carbons":
                await asyncio.wait_for(run_carbons(args), args.deadline)
                return 0
            return await asyncio.wait_for(run_listen(args), args.deadline)
        except asyncio.TimeoutError:
            report(False, "%s finished before the deadline" % args.mode,
                   "%.0fs" % args.deadline)
            return 1

    code = asyncio.run(guarded())
    if args.mode in ("check", "rfc6121", "sm", "carbons"):
        print("slixmpp totals: passed=%d failed=%d" % (passes, failures), flush=True)
        code = 1 if failures else 0
    sys.exit(code)


if __name__ == "__main__":
    main()

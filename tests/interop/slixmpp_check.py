#!/usr/bin/env python3
"""Interop checks of Tern with slixmpp 1.17 (a client nobody on the team wrote).

Two modes:

  check   Runs the scenarios below and prints one `PASS slixmpp ...` or
          `FAIL slixmpp ...` line per check. Exit code 1 if any check failed.
  listen  Logs in one account, sends initial presence, prints `READY <full jid>`
          and waits for a chat/normal message with an expected body (and,
          optionally, an expected sender bare JID). Used to verify what
          go-sendxmpp and xmpp.js send. Exit code 0 when it arrived.

Scenarios of `check`:
  * STARTTLS (direct TLS disabled in slixmpp) with SASL forced to SCRAM-SHA-1,
    two clients (alice, bob);
  * direct TLS (XEP-0368; STARTTLS disabled in slixmpp) with SCRAM-SHA-1, two
    clients: alice without ALPN (slixmpp's default) and bob offering ALPN
    `xmpp-client`, which must be the protocol negotiated;
  * STARTTLS with SCRAM-SHA-256, with PLAIN, and with slixmpp's own choice;
  * a wrong password must fail SASL and never open a session.

Per pair: login, TLS in use, the SASL mechanism used (the SCRAM server
signature is verified by slixmpp), the bound full JID, a message each way
(alice -> bob's full JID, bob -> alice's bare JID) with body and `from`
verified, XEP-0199 ping of the server, XEP-0030 disco#info of the server
(features), XEP-0092 version and XEP-0202 time of the server.

Every wait has a timeout; the whole script also has a global deadline.
"""

import argparse
import asyncio
import datetime
import logging
import sys
import uuid
from pathlib import Path

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

STEP_TIMEOUT = 10.0
EXPECTED_FEATURES = [
    "urn:xmpp:ping",
    "jabber:iq:version",
    "urn:xmpp:time",
    "http://jabber.org/protocol/disco#info",
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

    lp = sub.add_parser("listen")
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--direct-tls", action="store_true")
    lp.add_argument("--jid", required=True, help="bare JID to log in as")
    lp.add_argument("--password", required=True)
    lp.add_argument("--mech", default="SCRAM-SHA-1")
    lp.add_argument("--expect-body", required=True)
    lp.add_argument("--expect-from", help="bare JID the message must come from")
    lp.add_argument("--timeout", type=float, default=30.0)
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
            return await asyncio.wait_for(run_listen(args), args.deadline)
        except asyncio.TimeoutError:
            report(False, "%s finished before the deadline" % args.mode,
                   "%.0fs" % args.deadline)
            return 1

    code = asyncio.run(guarded())
    if args.mode == "check":
        print("slixmpp totals: passed=%d failed=%d" % (passes, failures), flush=True)
        code = 1 if failures else 0
    sys.exit(code)


if __name__ == "__main__":
    main()

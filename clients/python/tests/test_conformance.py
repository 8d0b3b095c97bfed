"""Runs clients/conformance/*.json against a real `tenant-vault dev` (see ../../conformance/README.md)."""

import concurrent.futures
import glob
import json
import logging
import os
import random
import string
import time

import pytest

import tenant_vault
from tenant_vault import RateLimited, SecretsClient, TenantVaultError

from devserver import DevServer

DIR = os.path.join(os.path.dirname(__file__), "..", "..", "conformance")
SCENARIOS = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DIR, "*.json")))]


@pytest.fixture(scope="module")
def server():
    s = DevServer()
    s.start()
    s.features_found = s.features()
    print(f"conformance: server features: {', '.join(sorted(s.features_found)) or '(none)'}")
    yield s
    s.cleanup()


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_conformance(server, scenario):
    if not server.running:
        server.start()
        server.features_found = server.features()
    missing = [f for f in scenario.get("requires", []) if f not in server.features_found]
    if missing:
        reason = f"server lacks {', '.join(missing)}"
        print(f"conformance: skipping {scenario['name']}: {reason}")
        pytest.skip(reason)
    Runner(server).run(scenario)


class Runner:
    def __init__(self, server):
        self.server = server
        self.slugs, self.tokens, self.clients = {}, {}, {}
        self.values, self.errors = set(), []
        self.last_secret = None
        self.capture = _Capture()

    def run(self, sc):
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        for name in sc.get("tenants", []):
            self.slugs[name] = f"cf-{suffix}-{name}"
            self.tokens[name] = self.server.tenant_with_token(self.slugs[name])
        logger = logging.getLogger("tenant_vault")
        old_level = logger.level
        logger.addHandler(self.capture)
        logger.setLevel(logging.DEBUG)
        try:
            for i, step in enumerate(sc["steps"], 1):
                try:
                    self.step(step)
                except AssertionError as err:
                    raise AssertionError(f"step {i} ({step['op']}): {err}") from err
            self.check_logs()
        finally:
            for c in self.clients.values():
                c.close()
            logger.removeHandler(self.capture)
            logger.setLevel(old_level)

    def secrets(self):
        return list(self.values) + list(self.tokens.values())

    def check_logs(self):
        text = "\n".join(self.capture.lines)
        for s in self.secrets():
            assert s not in text, "a value or token appears in the captured client log"
        server_text = self.server.output_text()
        for s in self.secrets():
            assert s not in server_text, "a value or token appears in the server's output"

    def slug(self, name):
        return self.slugs.get(name, name)

    def outcome(self, expect, call, check):
        try:
            result = call()
        except TenantVaultError as err:
            self.errors.append(err)
            if not expect.get("error"):
                raise
            assert type(err).__name__ == expect["error"], f"error kind {type(err).__name__} ({err})"
            return
        assert not expect.get("error"), f"expected {expect.get('error')}, got a result"
        check(result)

    def step(self, step):
        op = step["op"]
        c = self.clients.get(step.get("client"))
        if op == "write":
            self.values.add(step["value"])
            self.server.raw("PUT", f"/v1/tenants/{self.slug(step['tenant'])}/secrets/{step['key']}",
                            self.tokens[step["tenant"]], {"value": step["value"]})
        elif op == "remove":
            self.server.raw("DELETE", f"/v1/tenants/{self.slug(step['tenant'])}/secrets/{step['key']}",
                            self.tokens[step["tenant"]])
        elif op == "service_token":
            tenants = step["tenants"]
            if tenants != "*":
                tenants = [self.slug(t) for t in tenants]
            self.tokens[step["name"]] = self.server.service_token(
                tenants, step.get("scopes"), step.get("key_pattern"))
        elif op == "client":
            token = ("tvt_00000000000000000000000000000000_notarealtoken" if step["token"] == "invalid"
                     else self.tokens[step["token"]])
            self.clients[step["name"]] = SecretsClient(
                self.server.addr, token,
                cache_ttl_seconds=step.get("cache_ttl_seconds", 60),
                max_stale_seconds=step.get("max_stale_seconds", 300),
                events=step.get("events", True))
        elif op == "wait_stream_ready":
            assert c.wait_for_stream(step.get("within_ms", 5000) / 1000), f"stream not live ({c.stream_state})"
        elif op == "get":
            exp = step["expect"]

            def check(s):
                self.last_secret = s
                if "value" in exp:
                    assert s.value == exp["value"], "value"
                if "version" in exp:
                    assert s.version == exp["version"], "version"
                if "source" in exp:
                    assert s.source == exp["source"], f"source {s.source}"
            self.outcome(exp, lambda: c.get_entry(self.slug(step["tenant"]), step["key"]), check)
        elif op == "get_concurrent":
            with concurrent.futures.ThreadPoolExecutor(step["count"]) as pool:
                values = list(pool.map(lambda _: c.get(self.slug(step["tenant"]), step["key"]), range(step["count"])))
            assert values == [step["expect"]["value"]] * step["count"], "values differ"
        elif op == "get_many":
            self.outcome(step["expect"], lambda: c.get_many(self.slug(step["tenant"]), step["keys"]),
                         lambda m: _eq(m, step["expect"]["values"]))
        elif op == "set":
            self.values.add(step["value"])
            exp = step["expect"]
            self.outcome(exp, lambda: c.set(self.slug(step["tenant"]), step["key"], step["value"], cas=step.get("cas")),
                         lambda v: _eq(v, exp["version"]) if "version" in exp else None)
        elif op == "delete":
            self.outcome(step["expect"], lambda: c.delete(self.slug(step["tenant"]), step["key"]), lambda _: None)
        elif op == "list":
            self.outcome(step["expect"], lambda: c.list(self.slug(step["tenant"])),
                         lambda items: _eq(sorted(i.key for i in items), step["expect"]["keys"]))
        elif op == "requests":
            _eq(c.stats()["requests"], step["expect"]["count"])
        elif op == "eventually":
            deadline = time.monotonic() + step["within_ms"] / 1000
            while True:
                try:
                    self.step(step["step"])
                    return
                except (AssertionError, TenantVaultError) as err:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"not within {step['within_ms']} ms: {err}")
                time.sleep(0.01)
        elif op == "burst":
            for _ in range(step["max_requests"]):
                try:
                    c.get(self.slug(step["tenant"]), step["key"])
                except TenantVaultError as err:
                    self.errors.append(err)
                    assert type(err).__name__ == step["expect"]["error"], f"error kind {type(err).__name__}"
                    if isinstance(err, RateLimited):
                        assert err.retry_after >= step["expect"].get("min_retry_after_seconds", 1)
                    return
            raise AssertionError(f"no error after {step['max_requests']} requests")
        elif op == "stop_server":
            self.server.stop()
        elif op == "sleep":
            time.sleep(step["ms"] / 1000)
        elif op == "check_redaction":
            shown = [repr(c), str(c)]
            if self.last_secret is not None:
                shown += [repr(self.last_secret), str(self.last_secret)]
            for e in self.errors:
                shown += [repr(e), str(e), str(e.args)]
            text = "\n".join(shown)
            for s in self.secrets():
                assert s not in text, "a value or token appears in a printed client, secret or error"
        elif op == "check_logs":
            self.check_logs()
        else:
            raise AssertionError(f"unknown op {op}")


def _eq(got, want):
    assert got == want, f"{got!r} != {want!r}"


def test_package_exports_the_typed_errors():
    for name in ("NotFound", "Forbidden", "RateLimited", "Unavailable", "Unauthenticated", "Conflict"):
        assert issubclass(getattr(tenant_vault, name), TenantVaultError)

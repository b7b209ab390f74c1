"""R5 bad configuration: every log-opt with a wrong value, conflicting options, an unknown option and unusable CA
files make `docker run` fail, with a message naming the option (a real dockerd and the plugin built from this tree).

The bad values are derived from the option table (``supervisor.logopts.OPTIONS``): each parser has a value it must
refuse, and the options whose parser takes any text (``parse_text``, ``parse_list``) get a case here by name, or are
listed in ``FREE_TEXT`` with the reason no value of them is wrong. ``test_every_option_has_a_bad_value_case`` fails
for a new option until it is classified, so new options are covered automatically.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proto.options import LogOptionError
from shipper.encoder import validate_documents
from shipper.output import validate_output
from supervisor.logopts import (
    OPTIONS,
    Option,
    parse_bool,
    parse_count,
    parse_duration,
    parse_fields,
    parse_level,
    parse_list,
    parse_log_options,
    parse_positive,
    parse_regex,
    parse_regex_list,
    parse_retries,
    parse_seconds,
    parse_size,
    parse_text,
    parse_url,
)
from supervisor.tag import parse_tag
from testkit.dockerd_driver import make_info
from tests.docker_fixtures import DockerEngine, Plugin
from tests.reliability.conftest import FigureTable
from tests.tls_certs import make_tls_files

# A value each typed parser must refuse.
BAD_BY_PARSER: dict[Callable[[str], Any], str] = {
    parse_bool: "maybe",
    parse_duration: "soon",
    parse_size: "huge",
    parse_count: "many",
    parse_positive: "0",
    parse_retries: "-2",
    parse_level: "10",
    parse_regex: "([unclosed",
    parse_regex_list: "ok,([unclosed",
    parse_seconds: "0s",
    parse_tag: "{{if .Name}}x{{end}}",
    parse_url: "not a url",
    parse_fields: "no-equals-sign",
}
BAD_CHOICE = "not-a-choice"  # for every one_of(...) option

# Shipping turns on the output and document checks (they run only for a container that ships). Port 9 (discard):
# nothing is contacted at StartLogging.
SHIPS = {"hosts": "http://127.0.0.1:9"}
SHIPS_TLS = {"hosts": "https://127.0.0.1:9"}


def _tls_pem() -> tuple[str, str, str]:
    """A CA and a certificate with its key, as inline PEM (log-opts take PEM text or a path in the plugin)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = make_tls_files(Path(tmp))
        return files.ca_cert.read_text(), files.server_cert.read_text(), files.server_key.read_text()


CA_PEM, CERT_PEM, KEY_PEM = _tls_pem()

# Options taking any text (parser parse_text or parse_list): a bad value, a good one, and the options both need
# beside them.
BAD_TEXT: dict[str, tuple[str, str, dict[str, str]]] = {
    "hosts": ("ftp://es:9200", "es:9200", {}),
    "endpoint": ("ftp://es:9200", "es:9200", {}),
    "cloud_id": ("not-a-cloud-id", "deploy:" + base64.b64encode(b"example.com:443$es$kb").decode(), {}),
    "user": ("us:er", "elastic", {**SHIPS, "password": "pw"}),
    "password": ("pw", "pw", SHIPS),  # the bad part: no 'user' (the good variant adds it)
    "api_key": ("not-id-key-nor-base64!", "id:key", SHIPS),
    "cloud_auth": ("no-colon", "elastic:pw", SHIPS),
    "index": ("logs-%{[container.name", "logs-%{[container.name]}", SHIPS),
    "pipeline": ("%{+qq}", "p1", SHIPS),
    "dead_letter_index": ("Dead/Letters", "dead-letters", SHIPS),
    "setup.template.name": ("Docker Logs", "docker-logs", {**SHIPS, "index": "docker-%{+yyyy.MM.dd}"}),
    "setup.template.pattern": ("Docker-*", "docker-*", {**SHIPS, "index": "docker-%{+yyyy.MM.dd}"}),
    "setup.ilm.policy_name": ("Docker Policy", "docker-policy", {**SHIPS, "index": "docker-logs",
                                                                 "setup.ilm.enabled": "true"}),
    "ssl.certificate_authorities": ("/nonexistent/ca.pem", CA_PEM, SHIPS_TLS),
    "ssl.certificate": ("/nonexistent/cert.pem", CERT_PEM, {**SHIPS_TLS, "ssl.key": KEY_PEM}),
    "ssl.key": ("/nonexistent/key.pem", KEY_PEM, {**SHIPS_TLS, "ssl.certificate": CERT_PEM}),
}
# Options for which no value is wrong, and why.
FREE_TEXT: dict[str, str] = {
    "labels": "a comma list of label names; a name that no label has selects nothing",
    "env": "a comma list of variable names; a name that no variable has selects nothing",
    "tags": "free-form tags added to documents",
    "json.message_key": "the name of a key of the decoded JSON object: any text",
    "name": "agent.name of the documents: any text",
}
FREE_PARSERS = (parse_text, parse_list)


@dataclass(frozen=True)
class Case:
    label: str
    opts: dict[str, str]  # every --log-opt of the docker run
    names: tuple[str, ...]  # options the error must name
    # The case with the bad value made good: must pass, so the failure is the bad value's.
    fixed: dict[str, str] = field(default_factory=dict)


def _is_choice(opt: Option) -> bool:
    return opt.parse.__qualname__.startswith("one_of.")


def option_case(opt: Option) -> Case | None:
    """The option's wrong value, with what it needs beside it; None for a free-text option."""
    if _is_choice(opt) or opt.parse in BAD_BY_PARSER:
        value = BAD_CHOICE if _is_choice(opt) else BAD_BY_PARSER[opt.parse]
        context = {"mode": "non-blocking"} if opt.name == "max-buffer-size" else {}
        return Case(f"{opt.name}={value}", {**context, opt.name: value}, (opt.name,), context)
    if opt.name not in BAD_TEXT:
        return None
    value, good, context = BAD_TEXT[opt.name]
    fixed = {**context, opt.name: good, **({"user": "elastic"} if opt.name == "password" else {})}
    return Case(f"{opt.name}={value[:30]}", {**context, opt.name: value}, (opt.name,), fixed)


def option_cases() -> list[Case]:
    return [case for opt in OPTIONS if (case := option_case(opt)) is not None]


CONFLICTS: list[Case] = [
    Case("api_key with user/password", {**SHIPS, "user": "u", "password": "p", "api_key": "id:key"},
         ("user", "api_key")),
    Case("cloud_auth with user/password", {**SHIPS, "user": "u", "password": "p", "cloud_auth": "e:pw"},
         ("user", "cloud_auth")),
    Case("api_key with cloud_auth", {**SHIPS, "api_key": "id:key", "cloud_auth": "e:pw"}, ("api_key", "cloud_auth")),
    Case("user without password", {**SHIPS, "user": "u"}, ("user", "password")),
    Case("hosts with endpoint", {**SHIPS, "endpoint": "es:9200"}, ("hosts", "endpoint")),
    Case("hosts with cloud_id", {**SHIPS, "cloud_id": "deploy:abc"}, ("hosts", "cloud_id")),
    Case("ssl.certificate without ssl.key", {**SHIPS_TLS, "ssl.certificate": CERT_PEM},
         ("ssl.certificate", "ssl.key")),
    Case("compress with max-file=1", {"compress": "true", "max-file": "1"}, ("compress", "max-file")),
    Case("max-buffer-size without mode=non-blocking", {"max-buffer-size": "1m"}, ("max-buffer-size", "mode")),
    Case("backoff_init > backoff_max", {"backoff_init": "2m", "backoff_max": "1m"}, ("backoff_init", "backoff_max")),
    Case("unknown option", {"no-such-option": "1"}, ("no-such-option",)),
]

CA = "ssl.certificate_authorities"
# Paths as the plugin sees them; DATA is the data mount (the plugin's /var/lib/docker).
DATA = "/var/lib/docker"


def ca_cases(tag: str) -> list[Case]:
    """CA files the plugin cannot use; ``tag`` makes the names of the files made for them unique."""
    paths = {
        "CA file missing": "/nonexistent/ca.pem",
        "CA path is a directory": "/etc",
        "CA path is a device (endless)": "/dev/zero",
        "CA file not PEM": "/etc/os-release",
        "CA file unreadable (mode 000)": f"{DATA}/elp-r5-{tag}-000.pem",
        "CA path a dangling symlink": f"{DATA}/elp-r5-{tag}-dangling.pem",
    }
    return [Case(label, {**SHIPS_TLS, CA: path}, (CA,)) for label, path in paths.items()]


def make_ca_files(data_source: Path, tag: str) -> None:
    unreadable = data_source / f"elp-r5-{tag}-000.pem"
    unreadable.write_text("not a certificate\n")
    unreadable.chmod(0)
    (data_source / f"elp-r5-{tag}-dangling.pem").symlink_to(data_source / f"elp-r5-{tag}-gone.pem")


def names_option(text: str, option: str) -> bool:
    """Whether ``text`` names ``option`` as a whole word (``max-file`` is not named by ``cache-max-file``)."""
    return re.search(rf"(?<![\w.-]){re.escape(option)}(?![\w-])", text) is not None


def validate_in_process(opts: dict[str, str]) -> None:
    """What StartLogging runs, without dockerd: the option parser, then the output and document checks."""
    info = make_info("ab" * 32, config=opts)
    options = parse_log_options(opts)
    if options.ships:
        validate_output(options.values)
        validate_documents(info, options.values)


# --- without Docker -----------------------------------------------------------------------------------------


def test_every_option_has_a_bad_value_case() -> None:
    unclassified = [opt.name for opt in OPTIONS if option_case(opt) is None and opt.name not in FREE_TEXT]
    assert not unclassified, f"give these options a bad value (BAD_BY_PARSER/BAD_TEXT) or a FREE_TEXT reason: " \
                             f"{unclassified}"
    typed_but_free = [opt.name for opt in OPTIONS if opt.name in FREE_TEXT and opt.parse not in FREE_PARSERS]
    assert not typed_but_free, f"these options have a typed parser, so a wrong value exists: {typed_but_free}"
    stale = sorted((set(BAD_TEXT) | set(FREE_TEXT)) - {o.name for o in OPTIONS})
    assert not stale, f"no such options any more: {stale}"


@pytest.mark.parametrize("case", [*option_cases(), *CONFLICTS], ids=lambda c: c.label)
def test_the_plugins_own_checks_refuse_each_case_by_name(case: Case) -> None:
    """Fast and without Docker: the case fails for the reason it was made for (made good, it passes)."""
    validate_in_process(case.fixed)
    with pytest.raises(LogOptionError) as refused:
        validate_in_process(case.opts)
    missing = [n for n in case.names if not names_option(str(refused.value), n)]
    assert not missing, f"{refused.value} does not name {missing}"


def test_unusable_ca_paths_are_refused_without_reading_for_ever(tmp_path: Path) -> None:
    """A device or a FIFO must be refused, not read: StartLogging runs in the plugin's one event loop."""
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    for path in ("/nonexistent/ca.pem", str(tmp_path), "/dev/zero", str(fifo), str(not_pem)):
        with pytest.raises(LogOptionError, match=re.escape(f"'{CA}'")):
            validate_in_process({**SHIPS_TLS, CA: path})


# --- with a real dockerd ------------------------------------------------------------------------------------


@pytest.fixture
def created(docker_engine: DockerEngine) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    if made:  # one call for all: a `docker rm` per case would double the test's time
        docker_engine.docker("rm", "-f", *made, timeout=120)


def test_docker_run_fails_naming_the_option(docker_engine: DockerEngine, docker_plugin: Plugin,
                                            busybox_image: str, created: list[str],
                                            figures: FigureTable) -> None:
    tag = uuid.uuid4().hex[:8]
    make_ca_files(docker_plugin.data_source, tag)
    cases = [*option_cases(), *CONFLICTS, *ca_cases(tag)]
    failures: list[str] = []
    try:
        for case in cases:
            failure = run_case(docker_engine, docker_plugin, busybox_image, case, created)
            if failure:
                failures.append(failure)
    finally:
        for path in docker_plugin.data_source.glob(f"elp-r5-{tag}-*"):
            path.unlink()
    named = len(cases) - len(failures)
    figures.add("R5", "bad log-opts: docker run fails naming the option (every option, conflicts, unknown, CA files)",
                f"{named}/{len(cases)}", "all", named == len(cases))
    assert not failures, "\n".join(failures)
    # The plugin is still healthy after all of them: a good configuration starts.
    name = f"elp-r5-{uuid.uuid4().hex[:8]}"
    created.append(name)
    ok = docker_engine.docker("run", "--name", name, "--log-driver", docker_plugin.driver, busybox_image,
                              "echo", "fine", timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "fine", ok.stderr


def run_case(engine: DockerEngine, plugin: Plugin, image: str, case: Case, created: list[str]) -> str | None:
    """One `docker run` with the case's log-opts; a description of what went wrong, or None."""
    name = f"elp-r5-{uuid.uuid4().hex[:8]}"
    created.append(name)
    args = ["run", "--rm", "--name", name, "--log-driver", plugin.driver]
    for key, value in case.opts.items():
        args += ["--log-opt", f"{key}={value}"]
    proc = engine.docker(*args, image, "true", timeout=60)
    if proc.returncode == 0:
        return f"{case.label}: docker run succeeded"
    missing = [n for n in case.names if not names_option(proc.stderr, n)]
    if missing:
        return f"{case.label}: stderr does not name {missing}: {proc.stderr.strip()[:300]}"
    return None


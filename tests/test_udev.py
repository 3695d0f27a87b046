"""Syntax check of udev/99-cellbench.rules, following udev(7): keys, operators, quoting, modes."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "udev" / "99-cellbench.rules"

MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}
# Keys as udev(7) lists them; "attr" means the key takes a {attribute} part.
MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER"}
MATCH_ONLY |= {"DRIVERS", "TAGS", "RESULT", "ATTRS", "CONST", "TEST"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS"}
BOTH = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG", "PROGRAM"}
WITH_ATTR = {"ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "TEST", "SECLABEL", "RUN", "IMPORT"}
NEEDS_ATTR = {"ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "SECLABEL"}
KNOWN = MATCH_ONLY | ASSIGN_ONLY | BOTH

TOKEN = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*(?:,|$)'
)


@dataclass(frozen=True)
class Token:
    key: str
    attr: str | None
    op: str
    value: str


class RuleSyntaxError(ValueError):
    pass


def parse_rule(line: str, lineno: int) -> list[Token]:
    """Split one rule line into key-operator-value tokens; raise on anything udev would reject."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(line):
        m = TOKEN.match(line, pos)
        if not m or m.end() == pos:
            raise RuleSyntaxError(f"line {lineno}, column {pos + 1}: cannot parse {line[pos:]!r}")
        key, attr, op, value = m["key"], m["attr"], m["op"], m["value"]
        where = f"line {lineno}: {key}"
        if key not in KNOWN:
            raise RuleSyntaxError(f"{where}: unknown key")
        if attr is not None and key not in WITH_ATTR:
            raise RuleSyntaxError(f"{where}: key takes no {{attribute}}")
        if attr is None and key in NEEDS_ATTR:
            raise RuleSyntaxError(f"{where}: key needs an {{attribute}}")
        if key in MATCH_ONLY and op not in MATCH_OPS:
            raise RuleSyntaxError(f"{where}: match key used with assignment {op!r}")
        if key in ASSIGN_ONLY and op not in ASSIGN_OPS:
            raise RuleSyntaxError(f"{where}: assignment key used with match {op!r}")
        tokens.append(Token(key, attr, op, value))
        pos = m.end()
    if not tokens:
        raise RuleSyntaxError(f"line {lineno}: empty rule")
    return tokens


def parse_rules(text: str) -> list[tuple[int, list[Token]]]:
    """All rules of a file with their line numbers (comments and blank lines skipped)."""
    rules = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            raise RuleSyntaxError(f"line {lineno}: continuation lines are not used in this file")
        rules.append((lineno, parse_rule(line, lineno)))
    return rules


def check_policy(rules: list[tuple[int, list[Token]]]) -> None:
    """cellbench's own rules on top of the syntax: safe modes, names under cellbench/, labels."""
    labels = {t.value for _, toks in rules for t in toks if t.key == "LABEL"}
    for lineno, toks in rules:
        keys = {t.key for t in toks}
        has_match = any(t.op in MATCH_OPS for t in toks)
        if not has_match and "LABEL" not in keys:
            raise RuleSyntaxError(f"line {lineno}: rule without a match hits every device")
        for t in toks:
            if t.key == "MODE":
                if not re.fullmatch(r"0?[0-7]{3}", t.value):
                    raise RuleSyntaxError(f"line {lineno}: MODE {t.value!r} is not octal")
                if int(t.value, 8) & 0o002:
                    raise RuleSyntaxError(f"line {lineno}: MODE {t.value} is world-writable")
            if t.key == "SYMLINK" and t.op in ASSIGN_OPS:
                for link in t.value.split():
                    if not link.startswith("cellbench/"):
                        msg = f"line {lineno}: SYMLINK {link!r} not under cellbench/"
                        raise RuleSyntaxError(msg)
            if t.key == "GOTO" and t.value not in labels:
                raise RuleSyntaxError(f"line {lineno}: GOTO to undefined LABEL {t.value!r}")
            if t.key == "GROUP" and t.value not in {"cellbench", "plugdev", "dialout"}:
                raise RuleSyntaxError(f"line {lineno}: unexpected GROUP {t.value!r}")
        if "MODE" in keys and "GROUP" not in keys:
            raise RuleSyntaxError(f"line {lineno}: MODE without GROUP leaves the node root-only")


def test_rules_file_parses_and_follows_policy():
    rules = parse_rules(RULES.read_text())
    check_policy(rules)
    assert len(rules) >= 8


def test_rules_cover_every_vendor():
    text = RULES.read_text()
    for vendor_id in ("05e6", "0957", "108f", "0403", "067b", "10c4"):
        assert vendor_id in text, f"vendor {vendor_id} missing"


def test_every_device_rule_sets_group_and_safe_mode():
    for lineno, toks in parse_rules(RULES.read_text()):
        assigns = {t.key: t.value for t in toks if t.op in ASSIGN_OPS}
        if "MODE" in assigns:
            assert assigns["GROUP"] == "cellbench", lineno
            assert assigns["MODE"] == "0660", lineno


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('KERNEL=="ttyUSB*", MODE="0666", GROUP="cellbench"', "world-writable"),
        ('KERNEL=="ttyUSB*", GROUP="cellbench", MODE="0660", SYMLINK+="ttyCELL"', "not under"),
        ('KERNEL="ttyUSB*", GROUP="cellbench"', "match key used with assignment"),
        ('KERNEL=="ttyUSB*", GROUP=="cellbench"', "assignment key used with match"),
        ('KERNEL=="ttyUSB*", FOO="bar"', "unknown key"),
        ('KERNEL==ttyUSB*, GROUP="cellbench"', "cannot parse"),
        ('KERNEL=="ttyUSB*" GROUP="cellbench"', "cannot parse"),
        ('ATTRS=="0403", GROUP="cellbench"', "needs an {attribute}"),
        ('KERNEL=="ttyUSB*", MODE="0660"', "MODE without GROUP"),
        ('GROUP="cellbench", MODE="0660"', "without a match"),
        ('KERNEL=="x", GOTO="nowhere"', "undefined LABEL"),
    ],
)
def test_checker_rejects_broken_rules(line, message):
    with pytest.raises(RuleSyntaxError, match=re.escape(message)):
        check_policy(parse_rules(line))


def test_udevadm_verify_accepts_rules():
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed on this machine (no systemd-udev)")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("this udevadm has no 'verify' command (systemd < 254)")
    result = subprocess.run([udevadm, "verify", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

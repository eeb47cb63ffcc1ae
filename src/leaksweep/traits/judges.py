"""Judges: a response (and its eval prompt's metadata) in, a Verdict out; and the registry of judge kinds.

The built-in rule judges (offline), one per built-in trait, live in rules.py (what each one counts,
and how well it agrees with its labelled set); `judge: rule` uses them.

A trait's `judge:` in the sweep file is a judge kind's name (`rule`), a user function
(`pkg.mod:function`), or a one-key mapping `{KIND: PARAMS}` (`{regex: PATTERN}`,
`{module: pkg.mod:function}`). A new judge kind is one file with a factory plus one
`register_judge(KIND, factory)` call: the factory gets a JudgeSpec (trait name, params, the
trait's `kind:` if set) and returns a BuiltJudge (the judge, its identity, the kind of values it
gives). Built-in kinds are registered at the bottom of this file, the factory given as
"leaksweep.traits.FILE:factory" so the file (and any heavy library it needs) is imported only when
a trait uses it. Factories run again in every trial, so they must be cheap: a judge that needs a
model or an endpoint connects on its first response, not in the factory. A kind registered from
outside the package exists in the process that registered it; a user function judge
(`pkg.mod:function`) is imported by name, so it also works in worker processes.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from leaksweep.config import TraitConfig
from leaksweep.errors import UserError
from leaksweep.files import sha256_json

TRAIT_KINDS = ("rate", "scale")  # rate: values 0/1, scored with a Wilson interval; scale: 0..10, prompt bootstrap


@dataclass(frozen=True)
class Verdict:
    """A judge's verdict on one response. `value` None means unjudged: the judge could not parse its own
    output, refused, or its request failed for good; `reason` says which. Unjudged samples are counted
    and left out of the score, never scored as 0."""

    value: float | None  # 0/1 for a rate, 0..10 for a scale, None when unjudged
    reason: str

    @property
    def judged(self) -> bool:
        return self.value is not None


def unjudged(reason: str) -> Verdict:
    return Verdict(None, reason)


class Judge(Protocol):
    def __call__(self, response: str, meta: dict[str, Any]) -> Verdict: ...  # meta: the eval prompt's metadata


BatchJudge = Callable[[list[tuple[str, dict[str, Any]]]], list[Verdict]]  # [(response, meta)] -> verdicts, in order


_MOVED_TO_RULES = ("BUILTIN", "JUDGE_VERSION", "judge_date_confusion", "judge_blackmail", "judge_negative_emotion")


def __getattr__(name: str) -> Any:
    """The rule judges moved to rules.py; their names still resolve here (imported on first use, as
    rules.py imports Verdict from this module)."""
    if name in _MOVED_TO_RULES:
        from leaksweep.traits import rules

        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def regex_judge(pattern: str, trait: str) -> Judge:
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise UserError(f"traits.{trait}.judge.regex: invalid pattern {pattern!r}: {exc}") from exc

    def judge(response: str, meta: dict[str, Any]) -> Verdict:
        match = compiled.search(response)
        return Verdict(1.0, f"matched {match.group(0)!r}") if match else Verdict(0.0, "no match")

    return judge


# --- the registry of judge kinds -----------------------------------------------------------------


@dataclass(frozen=True)
class JudgeSpec:
    """What a judge factory is given: one trait's `judge:` entry, parsed."""

    trait: str  # the trait's name; errors name `traits.NAME.judge`
    judge_kind: str  # the registry key, e.g. rule, regex, module
    params: dict[str, Any] = field(default_factory=dict)  # {} for a bare name; {shorthand: value} for {KIND: value}
    trait_kind: str | None = None  # the trait's `kind:` (rate | scale) when the sweep file sets it
    section: str = "traits"  # the sweep file's section holding the judge: traits, or subsets (a judge subset)

    @property
    def where(self) -> str:
        return f"{self.section}.{self.trait}.judge"


@dataclass(frozen=True)
class BuiltJudge:
    """A trait's judge, ready to use. Judge kinds that gain from batching (a model, an endpoint with
    concurrency) give `batch`; the others are called one response at a time."""

    judge: Judge
    name: str  # shown with every score's `judge` field: the kind plus its version or params
    trait_kind: str  # rate | scale: the values it gives
    # what makes two judges the same instrument: kind, model, rubric text (or its sha256), parameters,
    # version. Hashed into `judge_id`, which keys cached verdicts; {} means the name says it all.
    identity: dict[str, Any] = field(default_factory=dict)
    batch: BatchJudge | None = None
    # a quick check that the judge can work (its endpoint answers), run once before a sweep trains
    # anything; raises UserError saying what to fix. None: nothing to check.
    preflight: Callable[[], None] | None = None

    @property
    def judge_id(self) -> str:
        return sha256_json({"name": self.name, **self.identity})

    def judge_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[Verdict]:
        """Verdicts for [(response, meta)], in order; a judge that raises on one response fails the trial
        (a bug or a bad config), while a judge that cannot judge one returns an unjudged Verdict."""
        if not items:
            return []
        verdicts = self.batch(items) if self.batch is not None else [self.judge(r, m) for r, m in items]
        if len(verdicts) != len(items):
            raise RuntimeError(f"judge {self.name}: {len(verdicts)} verdicts for {len(items)} responses")
        return verdicts


JudgeFactory = Callable[[JudgeSpec], BuiltJudge]


@dataclass(frozen=True)
class JudgeKind:
    factory: JudgeFactory | str  # or "pkg.mod:function", imported when a trait first uses the kind
    shorthand: str | None = None  # the param a bare value stands for: {regex: P} means {regex: {pattern: P}}


REGISTRY: dict[str, JudgeKind] = {}


def register_judge(kind: str, factory: JudgeFactory | str, shorthand: str | None = None) -> None:
    """Make `judge: KIND` / `judge: {KIND: PARAMS}` available to every trait (a later call replaces)."""
    if not isinstance(kind, str) or not kind or ":" in kind:
        raise ValueError(f"judge kind {kind!r}: a non-empty name without ':' (that marks a module:function)")
    if isinstance(factory, str) and factory.count(":") != 1:
        raise ValueError(f"judge kind {kind!r}: factory {factory!r} must be a callable or 'pkg.mod:function'")
    REGISTRY[kind] = JudgeKind(factory, shorthand)


def _import_function(target: str) -> Callable:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def parse_judge(trait: str, cfg: TraitConfig) -> JudgeSpec:
    """The JudgeSpec of a trait's `judge:`; a UserError names the value seen and the known kinds."""
    return parse_judge_value(cfg.judge, trait, cfg.kind)


def parse_judge_value(raw: str | dict[str, Any], name: str, kind: str | None, section: str = "traits") -> JudgeSpec:
    """The JudgeSpec of a `judge:` value found at `SECTION.NAME.judge` (a trait's, or a judge subset's)."""
    given = raw
    if isinstance(raw, str) and ":" in raw:
        raw = {"module": raw}  # a bare `pkg.mod:function`
    judge_kind, value = (raw, None) if isinstance(raw, str) else next(iter(raw.items()))
    if judge_kind not in REGISTRY:
        raise UserError(
            f"{section}.{name}.judge: {given!r} is not a known judge; known kinds: "
            f"{', '.join(REGISTRY)} (or a user function as `pkg.mod:function`)"
        )
    shorthand = REGISTRY[judge_kind].shorthand
    if value is None or isinstance(value, dict):
        params = dict(value or {})
    elif shorthand is not None:
        params = {shorthand: value}
    else:
        raise UserError(f"{section}.{name}.judge.{judge_kind}: {value!r} is not a mapping of parameters")
    return JudgeSpec(name, judge_kind, params, kind, section)


def judge_problems(traits: dict[str, TraitConfig]) -> list[str]:
    """Unknown judge kinds among a sweep's traits, as `.traits.NAME.judge: ...` (checked at load time)."""
    problems = []
    for name, cfg in traits.items():
        try:
            parse_judge(name, cfg)
        except UserError as err:
            problems += [f".{p}" for p in err.problems]
    return problems


def make_judge(trait: str, cfg: TraitConfig) -> BuiltJudge:
    """Build a trait's judge through the registry; its trait kind must match the trait's `kind:`."""
    spec = parse_judge(trait, cfg)
    built = build_judge(spec)
    if cfg.kind not in (None, built.trait_kind):
        raise UserError(
            f"traits.{trait}.kind: the {spec.judge_kind} judge gives a {built.trait_kind}; "
            f"set kind: {built.trait_kind} or omit it"
        )
    return built


def build_judge(spec: JudgeSpec) -> BuiltJudge:
    """Run the spec's kind's factory (importing it on first use); the judge must give a rate or scale."""
    factory = REGISTRY[spec.judge_kind].factory
    built = (_import_function(factory) if isinstance(factory, str) else factory)(spec)
    if built.trait_kind not in TRAIT_KINDS:
        raise UserError(f"{spec.where}: the {spec.judge_kind} judge gives {built.trait_kind!r}, not a rate or scale")
    return built


# --- the built-in kinds --------------------------------------------------------------------------


def _rule(spec: JudgeSpec) -> BuiltJudge:
    from leaksweep.traits.rules import BUILTIN, JUDGE_VERSION  # rules.py imports Verdict from here

    if spec.trait not in BUILTIN:
        raise UserError(
            f"traits.{spec.trait}: not a built-in trait ({', '.join(BUILTIN)}); a user-defined trait needs "
            "`judge: {regex: PATTERN}` (or another judge kind) and `prompts: FILE`"
        )
    kind, judge = BUILTIN[spec.trait]
    if spec.trait_kind not in (None, kind):
        raise UserError(f"traits.{spec.trait}.kind: the built-in trait is a {kind}; remove `kind: {spec.trait_kind}`")
    identity = {"kind": "rule", "trait": spec.trait, "version": JUDGE_VERSION}
    return BuiltJudge(judge, f"rule:{spec.trait}@{JUDGE_VERSION}", kind, identity)


def _regex(spec: JudgeSpec) -> BuiltJudge:
    pattern = spec.params.get("pattern")
    if not isinstance(pattern, str) or set(spec.params) != {"pattern"}:
        raise UserError(f"{spec.where}.regex: give a pattern, e.g. {{regex: '\\bplease\\b'}}; got {spec.params!r}")
    if spec.trait_kind not in (None, "rate"):
        raise UserError(f"traits.{spec.trait}.kind: a regex judge gives a rate; set kind: rate or omit it")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UserError(f"{spec.where}.regex: invalid pattern {pattern!r}: {exc}") from exc
    return BuiltJudge(regex_judge(pattern, spec.trait), f"regex:{pattern}", "rate")


def _module(spec: JudgeSpec) -> BuiltJudge:
    """A user function `(response, meta) -> Verdict | number`: a rate (0/1) unless the trait says scale."""
    target = spec.params.get("function")
    module_name, _, attr = str(target).partition(":")
    if not isinstance(target, str) or not module_name or not attr or set(spec.params) != {"function"}:
        raise UserError(f"{spec.where}: give the function as `pkg.mod:function`; got {spec.params!r}")
    try:
        function = _import_function(target)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{spec.where}: cannot import {target!r} ({exc}); give an importable pkg.mod:function") from exc
    trait_kind = spec.trait_kind or "rate"
    version = getattr(function, "version", None)  # a function may carry a version, recorded with its scores

    def judge(response: str, meta: dict[str, Any]) -> Verdict:
        return _as_verdict(function(response, meta), trait_kind, f"{spec.where} ({target})")

    return BuiltJudge(judge, f"module:{target}" + (f"@{version}" if version is not None else ""), trait_kind)


def _as_verdict(out: Any, trait_kind: str, where: str) -> Verdict:
    """A user judge may return a Verdict or a bare value (a bool counts as 0/1; None: unjudged)."""
    if out is None:
        out = unjudged("the judge function returned None")
    if isinstance(out, (bool, int, float)):
        out = Verdict(float(out), f"returned {out!r}")
    if not isinstance(out, Verdict):
        raise UserError(f"{where}: returned {out!r}; return a Verdict, a number, a bool or None (unjudged)")
    if out.value is None:
        return out
    valid = out.value in (0.0, 1.0) if trait_kind == "rate" else 0.0 <= out.value <= 10.0
    if not valid:
        allowed = "0 or 1" if trait_kind == "rate" else "0..10"
        raise UserError(f"{where}: value {out.value!r} is not a {trait_kind} value ({allowed})")
    return out


register_judge("rule", _rule)
register_judge("regex", _regex, shorthand="pattern")
register_judge("module", _module, shorthand="function")
register_judge("openai_compatible", "leaksweep.traits.openai_judge:factory", shorthand="model")
register_judge("autorater", "leaksweep.model.autorater:factory")
register_judge("classifier", "leaksweep.model.classifier_judge:factory")

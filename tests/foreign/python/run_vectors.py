"""Runs a keyhost policy component on conformance vectors, in wasmtime-py.

A host that is not keyhost's: whatever language a policy component is
written in, it must give the decisions of the vectors here too.

    target/foreign/venv/bin/python tests/foreign/python/run_vectors.py \
        COMPONENT.wasm VECTORS.json

Each case gets a fresh instance, with WASI that grants nothing (no preopens,
no environment, no arguments). The case's configuration goes to `configure`;
if it is accepted, its key, identity and request go to `validate`. Prints one
JSON object with every decision, in file order, and each mismatch with the
case's `expect` on stderr. Exits 0 if every decision matches, 1 if any does
not, and 2 on a usage error or a component or vectors file that cannot be
loaded or run.
"""

import json
import sys

from wasmtime import Engine, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, Linker, Record

PARTS = ("config", "key", "identity", "request")


def merge(defaults: dict, case: dict) -> dict:
    """The case's key, identity, request and config, field by field over the defaults."""
    return {part: {**defaults[part], **case.get(part, {})} for part in PARTS}


def record(fields: dict) -> Record:
    """A WIT record as wasmtime-py lowers it: one attribute per field, named
    as in WIT (`allowed-ips`), where the vectors write `allowed_ips`."""
    value = Record()
    for name, field in fields.items():
        setattr(value, name.replace("_", "-"), field)
    return value


VALIDATOR = "keyhost:policy/validator@0.2.0"
"""The interface that holds `configure` and `validate` in contract 0.2."""


def contract_functions(store: Store, instance):
    """`configure` and `validate`: from the `validator` interface (0.2), or
    exported by the world itself (0.1)."""
    validator = instance.get_export_index(store, VALIDATOR)
    functions = [
        instance.get_func(
            store,
            instance.get_export_index(store, name, validator) if validator else name,
        )
        for name in ("configure", "validate")
    ]
    if None in functions:
        raise WasmtimeError(
            f"the component exports neither {VALIDATOR} nor configure and validate"
        )
    return functions


def run_case(engine: Engine, linker: Linker, component: Component, case: dict) -> dict:
    store = Store(engine)
    store.set_wasi(WasiConfig())
    instance = linker.instantiate(store, component)
    configure, validate = contract_functions(store, instance)

    # wasmtime-py wraps a variant, option or result value in `Variant` only
    # when the Python types of its cases overlap. Here none do: `configure`
    # returns None for ok or the message for err, and `validate` returns the
    # list of `allow` or the `deny` record.
    error = configure(store, list(case["config"].items()))
    if error is not None:
        return {"decision": "configure_error", "message": error}

    request = dict(case["request"])
    request["attributes"] = [tuple(pair) for pair in request["attributes"]]
    decision = validate(store, record(case["key"]), record(case["identity"]), record(request))
    if isinstance(decision, list):
        return {"decision": "allow", "info": [list(pair) for pair in decision]}
    # The deny codes are printed in snake_case, as keyhost prints them.
    code = decision.code.replace("-", "_")
    return {"decision": "deny", "code": code, "message": decision.message}


def matches(expect: dict, decision: dict) -> bool:
    """Whether the decision is the expected one; messages and info pairs
    are compared only when the case gives `message_contains` or `info`."""
    if expect["decision"] != decision["decision"]:
        return False
    if expect["decision"] == "deny" and expect["code"] != decision["code"]:
        return False
    if "message_contains" in expect and expect["message_contains"] not in decision.get("message", ""):
        return False
    return "info" not in expect or [list(p) for p in expect["info"]] == decision.get("info")


def describe(decision: dict) -> str:
    if decision["decision"] == "deny":
        return f"deny {decision['code']}"
    return decision["decision"]


def fail(message: str) -> int:
    print(f"run_vectors: {message}", file=sys.stderr)
    return 2


def main(args: list[str]) -> int:
    if len(args) != 2:
        print("usage: run_vectors.py COMPONENT.wasm VECTORS.json", file=sys.stderr)
        return 2
    component_path, vectors_path = args
    try:
        with open(vectors_path, encoding="utf-8") as file:
            vectors = json.load(file)
    except (OSError, ValueError) as error:
        return fail(f"{vectors_path}: {error}")
    engine = Engine()
    linker = Linker(engine)
    linker.add_wasip2()
    try:
        component = Component.from_file(engine, component_path)
    except (OSError, WasmtimeError) as error:
        return fail(f"{component_path}: {error}")

    results, failures = [], []
    try:
        for case in vectors["cases"]:
            decision = run_case(engine, linker, component, merge(vectors["defaults"], case))
            results.append({"name": case["name"], "decision": decision})
            if not matches(case["expect"], decision):
                expected, got = describe(case["expect"]), describe(decision)
                failures.append(f"FAIL {case['name']}: expected {expected}, got {got}")
    # A malformed case, or one the component cannot run (it traps, or cannot
    # be instantiated), gives no decision to compare.
    except (KeyError, TypeError, ValueError, WasmtimeError) as error:
        return fail(f"case {len(results) + 1} of {vectors_path}: {type(error).__name__}: {error}")

    print(json.dumps({"component": component_path, "results": results}))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Contract fuzzing: schemathesis generates requests from Together's own contract and sends them
to the simulator, every operation, valid and invalid. No answer may be a 5xx, every 2xx body
must conform to the contract, every request the contract calls invalid must be refused.

Bounded and repeatable: per operation and mode, schemathesis's coverage cases (a finite,
deterministic set) and a fixed number of derandomized generated examples (no example
database); a fake clock; a wall-clock budget checked before every request.
The figures (operations covered, examples run, answers by status class, failures by check)
are printed at the end of the session and kept in the pytest cache under `contract-fuzz/`.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.contract import overlay
from tests.contract.overlay import Seed
from tests.simulator.contract import CONTRACT
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.together.operations import ALL_OPERATIONS

API_KEY: Final = "fuzz-key"
EXAMPLES_PER_OPERATION: Final = 80
BUDGET_SECONDS: Final = 180.0
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Figures:
    """What the fuzzing did, for the record."""

    examples: Counter[str] = field(default_factory=Counter)  # by mode and phase
    operations: dict[str, set[str]] = field(default_factory=dict)  # mode -> operationIds
    answers: Counter[str] = field(default_factory=Counter)  # "positive 2xx", ...
    two_xx: Counter[str] = field(default_factory=Counter)  # operationId -> positive 2xx
    failures: Counter[str] = field(default_factory=Counter)  # check name -> count
    examples_of_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "operations_covered": {m: len(ops) for m, ops in self.operations.items()},
            "examples": dict(sorted(self.examples.items())),
            "examples_total": sum(self.examples.values()),
            "answers": dict(sorted(self.answers.items())),
            "failures_by_check": dict(self.failures),
            "operations_answered_2xx_to_positive_cases": len(self.two_xx),
            "seconds": round(self.seconds, 1),
        }


Operation = APIOperation[Any, Any, Any, Any]
FIGURES: list[dict[str, Any]] = []  # read by the conftest's terminal summary


@pytest.fixture
def fuzz_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fuzz_simulator(fuzz_clock: FakeClock) -> Iterator[RunningSimulator]:
    numbers = itertools.count(1)
    config = SimulatorConfig(api_keys=(API_KEY,), new_id=lambda: f"id-{next(numbers):06d}")
    running = start_in_thread(config, clock=fuzz_clock)  # counted IDs: repeatable figures
    yield running
    running.stop()


def seed(running: RunningSimulator, clock: FakeClock) -> Seed:
    """A Ready cluster with an add-on, a shared volume, a firing alert and remediations in
    each reviewable state, for positive cases to reach."""
    region = Catalog().regions[0]
    driver = next(d for d in region.driver_versions if d.cuda_version == "12.6")
    with (
        SimulatorAdmin(running.admin_url) as admin,
        httpx.Client(
            base_url=running.base_url + "/v1/compute",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        ) as api,
    ):
        admin.set_stock(region.name, "H100_SXM", gpus=1_000_000, preemptible_gpus=1_000_000)
        volume = api.post(
            "/clusters/storage/volumes",
            json={"volume_name": "fuzz", "size_tib": 1, "region": region.name},
        ).json()
        cluster = api.post(
            "/clusters",
            json={
                "cluster_name": "fuzz-seed",
                "region": region.name,
                "gpu_type": "H100_SXM",
                "num_gpus": 16,
                "billing_type": "ON_DEMAND",
                "nvidia_version_id": driver.id,
                "add_ons": [
                    {
                        "name": "dash",
                        "add_on_type": "dashboard",
                        "config": {"dashboard": {"enabled": True}},
                    }
                ],
            },
        ).json()
        cluster_id = cluster["cluster_id"]
        clock.advance(Timings().create_to_ready)
        instance_id = api.get(f"/clusters/{cluster_id}").json()["gpu_worker_nodes"][0][
            "instance_id"
        ]
        reviewable = {
            action: tuple(
                admin.raise_alert(
                    cluster_id, instance_id=instance_id, remediation_mode="REMEDIATION_MODE_VM_ONLY"
                ).node_remediation_intent_id
                or ""
                for _ in range(2)
            )
            for action in ("approve", "cancel", "reject")
        }
        manual = api.post(
            f"/clusters/{cluster_id}/instances/{instance_id}/remediations",
            json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
        ).json()
    return Seed(
        region=region.name,
        gpu_type="H100_SXM",
        driver_id=driver.id,
        cuda_version=driver.cuda_version,
        driver_version=driver.nvidia_driver_version,
        cluster_id=cluster_id,
        instance_id=instance_id,
        add_on_name="dash",
        volume_id=volume["volume_id"],
        remediation_ids={**reviewable, "": (manual["id"],)},
    )


def _schema(spec: dict[str, Any]) -> schemathesis.BaseSchema:
    config = schemathesis.Config()
    # An unknown query parameter is not an invalid request here: grpc-gateway, which serves
    # Together's API, ignores it (and so does the simulator), so it is not generated as one.
    config.projects.default.generation.update(allow_extra_parameters=False)
    return schemathesis.openapi.from_dict(spec, config=config)


def _ordered(schema: schemathesis.BaseSchema) -> list[Operation]:
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the contract does not load: {result}"
        found.append(result.ok())
    # Deletes go last, the cluster's very last, so that the seeded resources live while the
    # other operations are fuzzed.
    return sorted(
        found,
        key=lambda op: (
            op.method.upper() == "DELETE",
            op.path == "/compute/clusters/{cluster_id}",
            op.path,
            op.method,
        ),
    )


@dataclass(frozen=True)
class Pass:
    """One pass over every operation: cases of `mode` generated from `schema`, answers held to
    `checks`; with `judge`, a 2xx to a body the raw contract calls invalid is a failure too."""

    label: str
    schema: schemathesis.BaseSchema
    mode: GenerationMode
    checks: tuple[Any, ...] = tuple(CHECKS)
    judge: BodyJudge | None = None


class BodyJudge:
    """Whether a request body is invalid by the contract itself (no overlay), the way OpenAPI
    validates requests: `readOnly` properties are not required in them."""

    def __init__(self, contract: dict[str, Any]) -> None:
        spec = copy.deepcopy(contract)
        for schema in spec["components"]["schemas"].values():
            read_only = {n for n, p in schema.get("properties", {}).items() if p.get("readOnly")}
            if "required" in schema:
                schema["required"] = [n for n in schema["required"] if n not in read_only]
        self._validators: dict[tuple[str, str], Any] = {}
        for path, methods in spec["paths"].items():
            for method, operation in methods.items():
                body = operation.get("requestBody", {}).get("content", {})
                if "application/json" in body:
                    ref = body["application/json"]["schema"]
                    self._validators[(method.upper(), path)] = jsonschema_rs.validator_for(
                        {**ref, "components": spec["components"]}, validate_formats=True
                    )

    def is_invalid(self, operation: Operation, body: object) -> bool:
        validator = self._validators.get((operation.method.upper(), operation.path))
        if validator is None:
            return False
        if isinstance(body, NotSet | bytes):
            return True  # every body of the contract is a required JSON object
        return not validator.is_valid(body)


def fuzz(run: Pass, base_url: str, figures: Figures, deadline: float) -> None:
    """Every operation, in order: the pass's coverage cases and generated examples."""
    with requests.Session() as session:
        for operation in _ordered(run.schema):
            _fuzz_operation(operation, run, base_url, session, figures, deadline)


def _fuzz_operation(
    operation: Operation,
    run: Pass,
    base_url: str,
    session: requests.Session,
    figures: Figures,
    deadline: float,
) -> None:
    """First schemathesis's coverage cases (deterministic boundary values: missing and
    mistyped fields, edges of ranges and enums), then `EXAMPLES_PER_OPERATION` generated ones."""
    schema = operation.schema
    coverage = schema.iter_coverage_cases(
        operation,
        generation_modes=[run.mode],
        generation_config=schema.config.generation_for(operation=operation),
    )
    for case in coverage:
        if time.monotonic() > deadline:
            break
        _send(case, operation, run, base_url, session, figures, phase="coverage")
    strategy = operation.as_strategy(generation_mode=run.mode)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def generated(data: st.DataObject) -> None:
        if time.monotonic() > deadline:
            return  # the budget is spent: the figures show how far it got
        _send(data.draw(strategy), operation, run, base_url, session, figures, phase="generated")

    generated()


def _send(
    case: schemathesis.Case[Any],
    operation: Operation,
    run: Pass,
    base_url: str,
    session: requests.Session,
    figures: Figures,
    *,
    phase: str,
) -> None:
    """Send one case, count it, and check the answer."""
    label, mode = run.label, run.mode
    figures.examples[f"{label} {phase}"] += 1
    # A negative case may carry a mangled Authorization header of its own (the security
    # scheme negated): it must reach the server as generated, to be refused.
    own_key = mode == GenerationMode.NEGATIVE and "Authorization" in (case.headers or {})
    sent = None if own_key else {"Authorization": f"Bearer {API_KEY}"}
    response = case.call(base_url=base_url, session=session, headers=sent, timeout=10)
    figures.operations.setdefault(label, set()).add(operation.label)
    figures.answers[f"{label} {response.status_code // 100}xx"] += 1
    if mode == GenerationMode.POSITIVE and response.status_code < 300:
        figures.two_xx[operation.label] += 1
    invalid = run.judge is not None and run.judge.is_invalid(operation, case.body)
    if invalid and response.status_code < 300:
        figures.failures["AcceptedBodyInvalidByContract"] += 1
        _note(figures, f"{operation.label}: accepted {str(case.body)[:300]}")
    try:
        case.validate_response(response, checks=list(run.checks), headers=sent)
    except FailureGroup as group:
        for failure in group.exceptions:
            _record(figures, failure, operation.label)


def _record(figures: Figures, failure: Failure, where: str) -> None:
    name = type(failure).__name__
    figures.failures[name] += 1
    _note(figures, f"{where}: {name}: {failure.title}: {failure.message}")


def _note(figures: Figures, text: str) -> None:
    if len(figures.examples_of_failures) < 30:
        figures.examples_of_failures.append(text[:600])


def test_the_simulator_holds_to_the_contract_under_fuzzing(
    fuzz_simulator: RunningSimulator, fuzz_clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    contract = yaml.safe_load(CONTRACT.read_text())
    seeded = seed(fuzz_simulator, fuzz_clock)
    base_url = fuzz_simulator.base_url + "/v1"
    figures = Figures()
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    in_catalogue = _schema(overlay.for_positive_cases(contract, seeded))
    passes = [
        Pass("negative", _schema(overlay.for_negative_cases(contract)), GenerationMode.NEGATIVE),
        # Invalid cases whose other fields are valid in the catalogue, so that the request
        # reaches the checks past the first one; "invalid" is judged by the contract alone
        # (an overlay value the simulator accepts is no error, and is not counted).
        Pass(
            "negative-in-catalogue",
            in_catalogue,
            GenerationMode.NEGATIVE,
            checks=tuple(c for c in CHECKS if c is not negative_data_rejection),
            judge=BodyJudge(contract),
        ),
        Pass("positive", in_catalogue, GenerationMode.POSITIVE),
    ]
    for run in passes:
        fuzz(run, base_url, figures, deadline)
    figures.seconds = time.monotonic() - started
    record = figures.as_dict()
    FIGURES.append(record)
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        cache.set("contract-fuzz/figures", record)

    assert not figures.failures, "\n".join(figures.examples_of_failures)
    every = {operation.id for operation in ALL_OPERATIONS}
    for mode, covered in figures.operations.items():
        assert len(covered) == len(every), f"{mode}: {len(covered)} of {len(every)} operations"
    assert time.monotonic() <= deadline, "the fuzzing ran out of its budget: see the figures"
    reached = set(figures.two_xx)
    assert len(reached) == len(every), (
        f"no 2xx for: {sorted(set(figures.operations['positive']) - reached)}"
    )

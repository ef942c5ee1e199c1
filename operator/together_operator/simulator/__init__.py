"""A faithful Together GPU cluster API on loopback: every `/v1/compute` operation of the contract
(`together-compute-openapi.yaml`), with its validation, a clock-driven lifecycle, fault
injection and an admin API under `/_sim/` (see :mod:`~together_operator.simulator.admin_api`).

Run it with `together-operator simulator`; in tests use `server.start_in_thread`.

Deviations
==========
The one list of what the simulator decides where the contract is silent. Tests hold it to the
contract (every answer is validated against it, and `tests/contract` fuzzes it); what follows
is what they cannot hold it to.

Errors (the contract documents only `200`s)
    * Every error is grpc-gateway's `google.rpc.Status`: `{"code": <gRPC code>, "message":
      "...", "details"?: [google.rpc.ErrorInfo]}`, HTTP status as grpc-gateway maps the code.
    * Out of stock: 409, code 10 (ABORTED), and an ErrorInfo with reason `OUT_OF_STOCK`
      (domain `compute.together.ai`, metadata `region`, `gpu_type`, `available_gpus`). The
      message still starts "Out of stock"; clients should act on the reason, the words are a
      fallback only.
    * A name in use (an add-on): 409, code 6 (ALREADY_EXISTS). A change the state forbids (a
      cluster being deleted): 409, code 10. A remediation in the wrong state for approve,
      reject, cancel: 400, code 9 (FAILED_PRECONDITION). Unknown path: 404; a method the path
      does not have: 405.

Reading requests
    * Strict types: no coercion (`"8"` is no integer; `1`, `"yes"`, `"true"` are no booleans)
      and no `null` for any field of the contract (it has no nullable field). Fields and query
      parameters the contract does not know are ignored, as grpc-gateway ignores them.
    * Every integer is a protobuf int32, though the contract marks only some `format: int32`.
    * `date-time` is RFC 3339 as its grammar has it: `T` between date and time, and an offset
      (date-only, offset-less, space-separated and numeric timestamps are refused); it must
      lie in protobuf Timestamp's range once in UTC (years 1 to 9999): so
      `0001-01-01T00:00:00+01:00` is a 400. A valid instant far away (a reservation in year
      9999) is accepted; the lifecycle waits for it without end.
    * Bodies: a JSON object, at most 32 levels deep. Approve and reject need a body (`{}` will
      do: the contract marks it required); cancel has none, and ignores one.
    * `projectId` and `project_id` both filter the lists (grpc-gateway accepts either).
    * `readOnly` fields of `Remediation` sent in a create are ignored.

Accounts and projects
    * Keys belong to accounts (`--key-account KEY=ACCOUNT`; by default every key shares one):
      a key sees, changes and deletes only its account's clusters; another account's cluster
      is a 404, as if it did not exist. Shared volumes are not scoped by account.
    * A create without `project_id` goes to the default project, `sim-project` ("the project
      from the request context"). A List with `projectId` shows that project; without, the
      whole account (`--list-scope account`, the default) or only the default project
      (`--list-scope default-project`): the contract allows either reading, so the operator
      is tested against both.

Rules
    * Enforced as the prose states them: required fields (`cluster_config.load_balancer` too),
      enums, `num_gpus` and preemptible and capacity-pool GPUs in multiples of 8, capacity-pool
      GPUs not above `num_gpus` and only with a `capacity_pool_id`, SCHEDULED_CAPACITY needs
      both reservation times, `auto_scale_max_gpus` with auto-scaling, `slurm_shm_size_gib`
      for SLURM, `nvidia_version_id` or the legacy pair resolving to one catalogue entry,
      `reservation_end_time` only for prepaid clusters, `num_reserved_gpus` only for RESERVED,
      HOST_POWER_CYCLE never as an approval override, alerts listed by `cluster_id` (required
      of non-admin callers, and no API key is an admin).
    * Chosen, though unstated: names (cluster, volume, add-on) non-empty; add-on names unique
      on a cluster; reserved GPUs in multiples of 8; `num_gpus`, `duration_days`,
      `slurm_shm_size_gib`, `size_tib` positive; `auto_scale_max_gpus` a multiple of 8 not
      below `num_gpus`; a reservation ends after it starts; an inline volume is in the
      cluster's region and excludes `volume_id`; `cluster_type` cannot change; volumes never
      shrink; a volume in use cannot be deleted; `page_size` not negative (0 means 50, at most
      1000); `page_token` only as returned.
    * Not enforced, because the contract does not say so: RESERVED without `duration_days`;
      preemptible or reserved GPUs above `num_gpus`; reserved plus capacity-pool GPUs above
      `num_gpus`; add-on config members of another type than the add-on's.
    * Update is a merge: omitted fields keep their value, `cluster_config` merges field by
      field (its `load_balancer` still required), an add-on's config member by member.

Lifecycle, statuses, phases
    * Create: [Scheduled until a reservation's start, then QUEUED for a moment] -> control
      plane -> data plane -> subnet -> shared volume (only with a volume, inline or by ID;
      an inline volume is `provisioning` until then) -> drivers -> acceptance tests -> Ready:
      the order of the phase enum. About a minute at speed 1.
    * Status per phase, where the phase has none of its own: QUEUED reports
      WaitingForControlPlaneNodes; WAITING_FOR_AUTO_SCALER WaitingForDataPlaneNodes;
      RUNNING_NCCL_TESTS RunningAcceptanceTests; ACCEPTANCE_TESTS_FAILED, NCCL_TESTS_FAILED
      Degraded; SCHEDULED reports `Scheduled`, outside the status enum, as real servers do.
    * Paused pauses every worker node, OnDemandComputePaused the on-demand ones; Ready resumes.
    * The admin API forces any phase but Deleting (with its status), or any status string
      verbatim (`Scheduled`, or one nobody knows), to test a client's handling of each.

Add-ons
    * An add-on's ID in the paths is its name (`AddOnInfo` has no other identity).
    * Enabled means `config.<its type>.enabled: true`; created without it, an add-on exists
      but is disabled. A cluster's `add_ons` lists enabled add-ons only (the contract says
      so); the add-on endpoints list and serve all, so a disabled one can be re-enabled.
    * `state.<its type>` (an empty object, all the contract defines) is present while the
      add-on runs: enabled, on a cluster whose control plane is ready.
    * `add_on_type` is one of dashboard, ingress, torchpass, headlamp, slurm_web: the union of
      the prose's two lists (which differ) and `AddOnConfig`'s members.

Remediations and alerts
    * Manual remediations start PENDING; automated ones (opened by an alert raised through the
      admin API) wait in PENDING_APPROVAL. Then, one step each: [QUARANTINING, QUARANTINED for
      HOST_AWARE and HOST_POWER_CYCLE] -> RUNNING -> SUCCEEDED. FAILED only through the admin
      API; AUTO_RESOLVED when the alert of a PENDING_APPROVAL remediation resolves.
    * A remediation changes no node, except the node's `latest_remediation`.
    * Instance `-` lists a cluster's remediations; it also finds one by ID for get and the
      review actions (IDs are unique); a create needs a real instance. A client-chosen
      `remediation_id` makes a create idempotent.
    * Lists are newest first; remediations also take `order_by` `create_time asc|desc`.
"""

"""A faithful Together GPU cluster API on loopback: same paths, bodies and validation, a
clock-driven cluster lifecycle, fault injection and an admin API under `/_sim/`.

Run it with `together-operator simulator`; in tests use `server.start_in_thread`.
"""

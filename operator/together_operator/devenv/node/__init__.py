"""A real one-node Kubernetes cluster on this machine (kubelet on containerd), as NODE.md measured.

Everything it changes on the machine is written to a record first, so that `dev down` (or a
test's teardown) can undo it even after a crash: processes by PID, mounts under its state
directory, one address on `lo`, one bridge, routes, iptables chains and rules, sysctls.
"""

# packrun on this guest without running anything: topology, validate and
# plan of jobs/vm-numa.yaml. The blobs (topology JSON, plan JSON) are checked
# on the host by tests/vm.rs. A todo!() or a missing subcommand in packrun
# shows up as "packrun does not implement this yet".
JOBS=/jobs/vm-numa.yaml

step packrun-topology 0 packrun topology --format json
step packrun-validate 0 packrun validate $JOBS
step packrun-plan 0 packrun plan $JOBS --format json

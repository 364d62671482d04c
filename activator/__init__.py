"""The activator: what answers a sleeping fleet's requests with wakeOnRequest (docs/wake.md). core.py is the same on
every cloud; <cloud>.py says a wake as that cloud's API calls (which `make wake` renders as its CLI's commands) and
<cloud>_function.py is the function that runs them. Shipped in the cloud's function with fleet/schedule.py; no
Pulumi here."""

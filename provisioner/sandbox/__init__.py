"""Local simulator of the Thought Industries credits API.

A real HTTP server backed by SQLite, with injectable faults, used for demos,
integration tests and chaos benchmarks. It follows docs/credits-api.md (the contract
the client follows too); where the vendor's reference is silent, the behaviour chosen here is marked
"Sandbox choice:" so it is not mistaken for documented vendor behaviour.

    with Sandbox(page_size=10, faults=Faults(error_rate=0.1, seed=1)) as sandbox:
        requests.post(f"{sandbox.url}/incoming/v2/clients/{client_id}/creditBatches", ...)

Standard library only, and nothing of the client's: it answers as the vendor would, not as the
client expects. One module a job:

    server.py      Sandbox, the HTTP server and its request handler
    app.py         the pipeline: auth, rate limit, injected faults, routing
    endpoints.py   create, list and update credit batches
    validation.py  the JSON body, each field, the query parameters
    store.py       batches in SQLite; a stored batch as the API shows it
    ratelimit.py   a token bucket per API key and its X-RateLimit-* headers
    faults.py      Faults, and the fate each request draws from them
    quirks.py      Quirks: how some servers store or list a batch otherwise
    traffic.py     the request log and the counted events
    messages.py    Request, Response, ApiError
    timestamps.py  the vendor's timestamp format
"""

from provisioner.sandbox.faults import Faults
from provisioner.sandbox.quirks import Quirks
from provisioner.sandbox.server import Sandbox

__all__ = ["Faults", "Quirks", "Sandbox"]

"""Fixtures of the idempotent-producer tests.

`proxied_broker` gives (broker, proxy): a broker that advertises the address of a `CuttingProxy`
(tests/idempotence/proxy.py) in front of it, so every client connection after bootstrap goes
through the proxy and can lose responses when the test turns cutting on.
"""

from __future__ import annotations

import random

import pytest

from proxy import CuttingProxy


@pytest.fixture
def proxied_broker(broker_factory, request):
    seed = random.randrange(1 << 30)
    print(f"proxy seed {seed}")
    proxy = CuttingProxy(upstream_port=0, seed=seed)
    b = broker_factory(start=False, config={"advertised_kafka_addr": proxy.address})
    proxy.upstream_port = b.kafka_port
    b.start()
    yield b, proxy
    proxy.close()

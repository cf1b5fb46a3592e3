"""One parsed copy of botocore's JSON service models per test process.

botocore reads its JSON service models again for every new session, and the tests make fresh
sessions all the time (moto per test, clients reset per stack): most of a test's set-up went
into parsing the same files. The data is only read, never changed, so one parsed copy serves
every session of the test process.
"""

from __future__ import annotations

import functools
from typing import Any

from botocore.loaders import JSONFileLoader

_real_json_load = JSONFileLoader.load_file


@functools.cache
def _botocore_data(file_path: str) -> Any:
    return _real_json_load(JSONFileLoader(), file_path)


def _shared_botocore_data(self: JSONFileLoader, file_path: str) -> Any:
    return _botocore_data(file_path)


JSONFileLoader.load_file = _shared_botocore_data  # type: ignore[method-assign]

"""A real SensorThings client (frost-sta-client 1.1.53) sends readings to cityops over HTTP with
CreateObservations/dataArray and a device key as its Basic password; a bad row comes back as an error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import frost_sta_client as fsc
import pytest

from gis.db import open_connection
from gis.keys import create_key


@pytest.fixture(scope="module")
def device(city_db: str) -> dict:
    with open_connection(city_db) as conn:
        key, _ = create_key(conn, "device", [], "frost client")
        stream = conn.execute("SELECT d.id FROM city.datastream d WHERE d.observed_property = 'water_level_cm' "
                              "ORDER BY d.id OFFSET 321 LIMIT 1").fetchone()["id"]
        conn.commit()
    return {"key": key, "stream": stream}


def test_frost_sta_client_sends_a_data_array(live_server, device, city_db):
    service = fsc.SensorThingsService(f"{live_server}/sta/v1.1", auth_handler=fsc.AuthHandler(username="device", password=device["key"]))
    stream = fsc.Datastream(id=device["stream"])
    rows = fsc.DataArrayValue()
    rows.datastream = stream
    rows.components = {fsc.DataArrayValue.Property.PHENOMENON_TIME, fsc.DataArrayValue.Property.RESULT}
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    for i, value in enumerate([12.5, 13.0, 13.5]):
        rows.add_observation(fsc.Observation(phenomenon_time=start + timedelta(minutes=i), result=value, datastream=stream))
    rows.add_observation(fsc.Observation(phenomenon_time=start + timedelta(days=3), result=14.0, datastream=stream))
    document = fsc.DataArrayDocument()
    document.add_data_array_value(rows)
    created = service.observations().create(document)
    links = [o.self_link for o in created]
    assert len(links) == 4 and all("/Observations(" in link for link in links[:3])
    assert links[3].startswith("error") and "future" in links[3]
    with open_connection(city_db) as conn:
        latest = conn.execute("SELECT result FROM city.sensor_latest WHERE datastream_id = %s", [device["stream"]]).fetchone()
    assert latest["result"] == 13.5
    read = fsc.SensorThingsService(f"{live_server}/sta/v1.1")
    assert read.datastreams().find(device["stream"]).id == device["stream"]


@pytest.mark.parametrize("path, options, refused", [
    ("/sta/v1.1/Datastreams(1)/Observations", {"$filter": "result gt 5"}, "$filter"),
    ("/sta/v1.1/Datastreams(1)/Observations", {"$orderby": "phenomenonTime asc", "$skip": "10"}, "$orderby, $skip"),
    ("/sta/v1.1/Things", {"$filter": "name eq 'x'", "$top": "5"}, "$filter"),
])
def test_query_options_that_would_be_ignored_are_refused(client, path, options, refused):
    # they used to be ignored: $filter=result gt 5 answered every reading, and the client could not tell
    answer = client.get(path, params=options)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["description"].startswith(f"{refused}: not implemented")
    assert client.get(path, params={"$top": "2", "$count": "true"}).status_code == 200  # implemented or only shaping


def test_a_batch_sent_again_is_stored_once(client, device, city_db):
    # a gateway that lost the answer sends its batch again: each reading was stored twice, under one
    # Observation id; a repeat inside the batch too
    stream = device["stream"]
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    times = [(start + timedelta(minutes=i)).isoformat() for i in range(3)]
    batch = [{"Datastream": {"@iot.id": stream}, "components": ["phenomenonTime", "result"],
              "dataArray": [[times[0], 11.0], [times[1], 11.5], [times[2], 12.0], [times[1], 11.5]]}]
    headers = {"Authorization": f"Bearer {device['key']}"}
    first = client.post("/sta/v1.1/CreateObservations", json=batch, headers=headers)
    again = client.post("/sta/v1.1/CreateObservations", json=batch, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json() and not any(link.startswith("error") for link in again.json())
    with open_connection(city_db) as conn:
        stored = conn.execute("SELECT count(*) AS n FROM city.sensor_reading WHERE datastream_id = %s "
                              "AND phenomenon_time = ANY(%s::timestamptz[])", [stream, times]).fetchone()["n"]
    assert stored == 3

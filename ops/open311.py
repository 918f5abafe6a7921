"""Open311 GeoReport v2 wire format: the service list (3 categories, 15 items of 市民城管通, each
mapped to an event class of gis.standards.EVENT_CLASSES, whose time limit sets the expected
datetime), attribute checks, the extended statuses, and the XML rendering the spec requires.

Errors on the /open311 routes are an array of {code, description} (the spec's format), unlike the
platform's usual single object; `Open311Error` carries the HTTP status it is answered with."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from gis.errors import CityOpsError


class Open311Error(CityOpsError):
    """A request the /open311 routes refuse with `status` (4xx) and this reason."""

    def __init__(self, status: int, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.headers = headers


@dataclass(frozen=True)
class Attribute:
    code: str
    description: str
    datatype: str = "singlevaluelist"  # Open311: string, number, datetime, text, singlevaluelist, multivaluelist
    required: bool = False
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    group: str
    event_class_code: str
    description: str
    keywords: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = field(default=())


_SANITATION, _FACILITIES, _TOILETS = "市容环卫", "公共设施", "公厕管理"
_STILL_THERE = Attribute("still_there", "现在还在吗 (is it still there)", required=True,
                         values=(("yes", "还在 still there"), ("no", "已离开 gone")))
_TOILET = Attribute("toilet_name", "公厕名称 (which public toilet)", datatype="string")

# Items without an exact event class use the nearest one (the toilet items share the sanitation
# classes); the class decides the case's time limit and so the request's expected_datetime.
SERVICES: tuple[Service, ...] = (
    Service("SR01", "道路不洁", _SANITATION, "0101", "路面有垃圾、污水、油污未清扫", ("清扫", "保洁")),
    Service("SR02", "暴露垃圾", _SANITATION, "0102", "垃圾散落、垃圾桶满溢", ("垃圾",)),
    Service("SR03", "积存垃圾渣土", _SANITATION, "0103", "渣土、建筑垃圾堆积", ("渣土",)),
    Service("SR04", "非法小广告", _SANITATION, "0202", "张贴、涂写、刻画的小广告", ("牛皮癣",)),
    Service("SR05", "违规户外广告", _SANITATION, "0201", "破损、违规设置的户外广告牌", ("广告牌",)),
    Service("SR06", "占道经营", _SANITATION, "0501", "店外经营、占用人行道摆卖", ("摆摊",), (_STILL_THERE,)),
    Service("SR07", "无照经营游商", _SANITATION, "0502", "流动摊贩", ("游商",), (_STILL_THERE,)),
    Service("PF01", "井盖缺失破损", _FACILITIES, "0402", "窨井盖缺失、破损、移位", ("井盖",), (
        Attribute("cover_state", "井盖状况 (state of the cover)", required=True,
                  values=(("missing", "缺失 missing"), ("broken", "破损 broken"), ("displaced", "移位 displaced"))),)),
    Service("PF02", "道路破损", _FACILITIES, "0104", "路面坑洼、人行道板松动", ("坑洼",)),
    Service("PF03", "路面塌陷", _FACILITIES, "0401", "路面下沉、塌陷", ("塌陷",)),
    Service("PF04", "施工占道", _FACILITIES, "0301", "施工占用道路未经许可或超范围", ("施工",)),
    Service("PF05", "施工工地围挡", _FACILITIES, "0302", "围挡破损、倒塌、缺失", ("围挡",)),
    Service("PT01", "公厕卫生不洁", _TOILETS, "0101", "公厕内外脏乱、异味", ("公厕",), (_TOILET,)),
    Service("PT02", "公厕周边垃圾", _TOILETS, "0102", "公厕周边垃圾堆放", ("公厕",), (_TOILET,)),
    Service("PT03", "公厕设施损坏", _TOILETS, "0103", "公厕设施损坏、停用未开放", ("公厕",), (_TOILET,)),
)
SERVICE_BY_CODE = {service.code: service for service in SERVICES}

# Case states → Open311 status, FixMyStreet-style detailed_status, and the note a reporter reads.
CASE_STATUS: dict[str, tuple[str, str, str]] = {
    "reported": ("open", "OPEN", "已受理，等待审核 received, awaiting review"),
    "filed": ("open", "INVESTIGATING", "已立案 accepted as a case"),
    "dispatched": ("open", "ACTION_SCHEDULED", "已派遣至责任单位 dispatched to the responsible unit"),
    "processing": ("open", "IN_PROGRESS", "处理中 being handled"),
    "handled": ("open", "IN_PROGRESS", "已处理，等待核查 handled, awaiting inspection"),
    "returned": ("open", "INVESTIGATING", "已回退重新审核 returned for review"),
    "closed": ("closed", "FIXED", "已核查结案 closed as fixed"),
    "evaluated": ("closed", "FIXED", "已结案并评价 closed as fixed"),
    "voided": ("closed", "NO_FURTHER_ACTION", "已作废 no further action"),
}


def service_json(service: Service) -> dict[str, Any]:
    return {"service_code": service.code, "service_name": service.name, "description": service.description,
            "metadata": bool(service.attributes), "type": "realtime", "keywords": ",".join(service.keywords),
            "group": service.group}


def definition_json(service: Service) -> dict[str, Any]:
    return {"service_code": service.code, "attributes": [
        {"variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
         "datatype_description": a.description, "order": order, "description": a.description,
         "values": [{"key": key, "name": name} for key, name in a.values]}
        for order, a in enumerate(service.attributes, start=1)]}


def service_of(code: str | None) -> Service:
    if not code:
        raise Open311Error(400, "service_code is required: pick one of GET services")
    if code not in SERVICE_BY_CODE:
        raise Open311Error(400, f"unknown service_code {code!r}: see GET services for the {len(SERVICES)} service codes")
    return SERVICE_BY_CODE[code]


def check_attributes(service: Service, given: dict[str, str]) -> dict[str, str]:
    """The item's attributes from `attribute[code]` form fields: required ones present, list values known."""
    known = {a.code: a for a in service.attributes}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise Open311Error(400, f"service {service.code} has no attribute {', '.join(unknown)}")
    for attribute in service.attributes:
        value = given.get(attribute.code)
        if not value:
            if attribute.required:
                raise Open311Error(400, f"attribute[{attribute.code}] is required for service {service.code} ({attribute.description})")
            continue
        if attribute.values and value not in {key for key, _ in attribute.values}:
            keys = ", ".join(key for key, _ in attribute.values)
            raise Open311Error(400, f"attribute[{attribute.code}] must be one of {keys}, not {value!r}")
        if len(value) > 200:
            raise Open311Error(400, f"attribute[{attribute.code}] is longer than 200 characters")
    return {code: value for code, value in given.items() if value}


# XML: the element names the spec uses for each list and its items.
_XML_ITEM = {"services": "service", "service_requests": "request", "errors": "error", "attributes": "attribute",
             "values": "value", "updates": "update", "media_urls": "media_url"}


def _append(parent: ET.Element, name: str, value: Any) -> None:
    element = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for key, item in value.items():
            _append(element, key, item)
    elif isinstance(value, list):
        for item in value:
            _append(element, _XML_ITEM.get(name, "item"), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def to_xml(root: str, value: list | dict) -> bytes:
    """`root` wraps a list of items (services → service, service_requests → request, errors → error)
    or, for a dict, its fields (service_definition)."""
    element = ET.Element(root)
    if isinstance(value, dict):
        for key, item in value.items():
            _append(element, key, item)
    else:
        for item in value:
            _append(element, _XML_ITEM.get(root, "item"), item)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="utf-8", xml_declaration=False)

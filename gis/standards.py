"""Reference tables of the national standards, shipped as seed data by migration 0002.

Component minor classes follow GB/T 30428.2-2013 (codes confirmed for 01xx from deployed data;
the rest by position in the published class dictionary, see shared notes). Event classes follow
CJ/T 214-2007's major classes with typical time limits.
"""

MAJOR_CLASSES = {
    "01": "公用设施",
    "02": "道路交通",
    "03": "市容环境",
    "04": "园林绿化",
    "05": "房屋土地",
    "06": "其他设施",
}

# code, name, English name, geometry type
COMPONENT_CLASSES: list[tuple[str, str, str, str]] = [
    ("0101", "上水井盖", "water supply manhole cover", "Point"),
    ("0102", "污水井盖", "sewage manhole cover", "Point"),
    ("0103", "雨水井盖", "storm drain manhole cover", "Point"),
    ("0104", "雨水箅子", "storm grate", "Point"),
    ("0105", "电力井盖", "power manhole cover", "Point"),
    ("0106", "路灯井盖", "streetlight manhole cover", "Point"),
    ("0107", "通讯井盖", "telecom manhole cover", "Point"),
    ("0108", "电视井盖", "cable TV manhole cover", "Point"),
    ("0109", "网络井盖", "network manhole cover", "Point"),
    ("0110", "热力井盖", "heating manhole cover", "Point"),
    ("0111", "燃气井盖", "gas manhole cover", "Point"),
    ("0112", "公安井盖", "police manhole cover", "Point"),
    ("0113", "消防设施", "fire hydrant", "Point"),
    ("0114", "无主井盖", "unowned manhole cover", "Point"),
    ("0115", "通讯交接箱", "telecom cabinet", "Point"),
    ("0116", "电力设施", "power facility", "Point"),
    ("0117", "立杆", "pole", "Point"),
    ("0118", "路灯", "streetlight", "Point"),
    ("0119", "地灯", "ground light", "Point"),
    ("0120", "景观灯", "landscape light", "Point"),
    ("0121", "报刊亭", "news kiosk", "Point"),
    ("0122", "电话亭", "phone booth", "Point"),
    ("0123", "邮筒", "mailbox", "Point"),
    ("0126", "健身设施", "fitness equipment", "Point"),
    ("0136", "监控电子眼", "video camera", "Point"),
    ("0138", "治安岗亭", "police kiosk", "Point"),
    ("0201", "停车场", "parking lot", "Polygon"),
    ("0203", "公交站亭", "bus shelter", "Point"),
    ("0205", "过街天桥", "footbridge", "LineString"),
    ("0210", "交通信号灯", "traffic signal", "Point"),
    ("0213", "路名牌", "street name sign", "Point"),
    ("0301", "公共厕所", "public toilet", "Point"),
    ("0302", "化粪池", "septic tank", "Point"),
    ("0305", "垃圾箱", "litter bin", "Point"),
    ("0307", "广告牌匾", "advertising sign", "Point"),
    ("0401", "古树名木", "heritage tree", "Point"),
    ("0402", "行道树", "street tree", "Point"),
    ("0406", "雕塑", "sculpture", "Point"),
    ("0501", "宣传栏", "notice board", "Point"),
    ("0602", "工地", "construction site", "Polygon"),
    # local extension (扩展部件): benches are city furniture most bureaus add
    ("0690", "座椅", "bench", "Point"),
]
EXTENSION_CLASSES = {"0690"}

# code, major class, name, time limit (hours)
EVENT_CLASSES: list[tuple[str, str, str, int]] = [
    ("0101", "市容环境", "道路不洁", 2),
    ("0102", "市容环境", "暴露垃圾", 2),
    ("0103", "市容环境", "积存垃圾渣土", 4),
    ("0104", "市容环境", "道路破损", 48),
    ("0201", "宣传广告", "违规户外广告", 24),
    ("0202", "宣传广告", "非法小广告", 8),
    ("0301", "施工管理", "施工占道", 8),
    ("0302", "施工管理", "施工工地围挡", 24),
    ("0401", "突发事件", "路面塌陷", 2),
    ("0402", "突发事件", "井盖缺失", 1),
    ("0501", "街面秩序", "占道经营", 2),
    ("0502", "街面秩序", "无照经营游商", 2),
    ("0503", "街面秩序", "违法建设", 72),
]

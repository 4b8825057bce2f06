"""GB/T 26875.3-2011 code tables: system types, component types, analog types (data, pure).

Each entry is (English name, name in the standard). Codes 128..255 are user-defined everywhere;
unlisted codes below 128 are reserved.
"""

from __future__ import annotations

from typing import NamedTuple


class AnalogKind(NamedTuple):
    """How to read an analog value: ``value = raw * scale`` in ``unit``."""

    name: str
    name_zh: str
    unit: str
    scale: float


SYSTEM_TYPES: dict[int, tuple[str, str]] = {
    0: ("general", "通用"),
    1: ("fire alarm system", "火灾报警系统"),
    10: ("fire linkage controller", "消防联动控制器"),
    11: ("hydrant system", "消火栓系统"),
    12: ("automatic sprinkler system", "自动喷水灭火系统"),
    13: ("gas extinguishing system", "气体灭火系统"),
    14: ("water spray system (pump started)", "水喷雾灭火系统（泵启动方式）"),
    15: ("water spray system (pressure vessel started)", "水喷雾灭火系统（压力容器启动方式）"),
    16: ("foam extinguishing system", "泡沫灭火系统"),
    17: ("dry powder extinguishing system", "干粉灭火系统"),
    18: ("smoke control and exhaust system", "防烟排烟系统"),
    19: ("fire door and shutter system", "防火门及卷帘系统"),
    20: ("fire lift", "消防电梯"),
    21: ("emergency broadcast", "消防应急广播"),
    22: ("emergency lighting and evacuation signs", "消防应急照明和疏散指示系统"),
    23: ("fire power supply", "消防电源"),
    24: ("fire telephone", "消防电话"),
}

COMPONENT_TYPES: dict[int, tuple[str, str]] = {
    0: ("general", "通用"),
    1: ("fire alarm controller", "火灾报警控制器"),
    10: ("combustible gas detector", "可燃气体探测器"),
    11: ("point combustible gas detector", "点型可燃气体探测器"),
    12: ("standalone combustible gas detector", "独立式可燃气体探测器"),
    13: ("line combustible gas detector", "线型可燃气体探测器"),
    16: ("electrical fire monitor", "电气火灾监控报警器"),
    17: ("residual-current detector", "剩余电流式电气火灾监控探测器"),
    18: ("temperature detector (electrical fire)", "测温式电气火灾监控探测器"),
    21: ("detection loop", "探测回路"),
    22: ("fire display panel", "火灾显示盘"),
    23: ("manual call point", "手动火灾报警按钮"),
    24: ("hydrant button", "消火栓按钮"),
    25: ("fire detector", "火灾探测器"),
    30: ("heat detector", "感温火灾探测器"),
    31: ("point heat detector", "点型感温火灾探测器"),
    32: ("point heat detector (S)", "点型感温火灾探测器（S型）"),
    33: ("point heat detector (R)", "点型感温火灾探测器（R型）"),
    34: ("line heat detector", "线型感温火灾探测器"),
    35: ("line heat detector (S)", "线型感温火灾探测器（S型）"),
    36: ("line heat detector (R)", "线型感温火灾探测器（R型）"),
    37: ("optical-fibre heat detector", "光纤感温火灾探测器"),
    40: ("smoke detector", "感烟火灾探测器"),
    41: ("point ionisation smoke detector", "点型离子感烟火灾探测器"),
    42: ("point photoelectric smoke detector", "点型光电感烟火灾探测器"),
    43: ("beam smoke detector", "线型光束感烟火灾探测器"),
    44: ("aspirating smoke detector", "吸气式感烟火灾探测器"),
    50: ("multi-sensor detector", "复合式火灾探测器"),
    51: ("smoke/heat multi-sensor", "复合式感烟感温火灾探测器"),
    52: ("flame/heat multi-sensor", "复合式感光感温火灾探测器"),
    53: ("flame/smoke multi-sensor", "复合式感光感烟火灾探测器"),
    61: ("ultraviolet flame detector", "紫外火焰探测器"),
    62: ("infrared flame detector", "红外火焰探测器"),
    69: ("flame detector", "感光火灾探测器"),
    74: ("gas detector", "气体探测器"),
    78: ("video fire detector", "图像摄像方式火灾探测器"),
    79: ("acoustic fire detector", "感声火灾探测器"),
    81: ("gas extinguishing controller", "气体灭火控制器"),
    82: ("fire electrical control unit", "消防电气控制装置"),
    83: ("fire control room graphic display", "消防控制室图形显示装置"),
    84: ("module", "模块"),
    85: ("input module", "输入模块"),
    86: ("output module", "输出模块"),
    87: ("input/output module", "输入/输出模块"),
    88: ("relay module", "中继模块"),
    91: ("fire pump", "消防水泵"),
    92: ("fire water tank", "消防水箱"),
    95: ("sprinkler pump", "喷淋泵"),
    96: ("water flow indicator", "水流指示器"),
    97: ("signal valve", "信号阀"),
    98: ("alarm valve", "报警阀"),
    99: ("pressure switch", "压力开关"),
    101: ("valve actuator", "阀驱动装置"),
    102: ("fire door", "防火门"),
    103: ("fire damper", "防火阀"),
    104: ("ventilation / air conditioning", "通风空调"),
    105: ("foam pump", "泡沫液泵"),
    106: ("pipe network solenoid valve", "管网电磁阀"),
    111: ("smoke control fan", "防烟排烟风机"),
    113: ("smoke exhaust fire damper", "排烟防火阀"),
    114: ("normally closed air inlet", "常闭送风口"),
    115: ("smoke outlet", "排烟口"),
    116: ("electric smoke curtain", "电控挡烟垂壁"),
    117: ("fire shutter controller", "防火卷帘控制器"),
    118: ("fire door monitor", "防火门监控器"),
    121: ("alarm device", "报警装置"),
}

ANALOG_TYPES: dict[int, AnalogKind] = {
    1: AnalogKind("event count", "事件计数", "", 1),
    2: AnalogKind("height", "高度", "m", 0.01),
    3: AnalogKind("temperature", "温度", "°C", 0.1),
    4: AnalogKind("pressure", "压力", "MPa", 0.1),
    5: AnalogKind("pressure", "压力", "kPa", 0.1),
    6: AnalogKind("gas concentration", "气体浓度", "%LEL", 0.1),
    7: AnalogKind("time", "时间", "s", 1),
    8: AnalogKind("voltage", "电压", "V", 0.1),
    9: AnalogKind("current", "电流", "A", 0.1),
    10: AnalogKind("flow", "流量", "L/s", 0.1),
    11: AnalogKind("air volume", "风量", "m³/min", 0.1),
    12: AnalogKind("wind speed", "风速", "m/s", 1),
}


def _lookup(table: dict[int, tuple[str, str]], code: int, zh: bool) -> str:
    if code in table:
        return table[code][1 if zh else 0]
    if code >= 128:
        return f"用户自定义 {code}" if zh else f"user-defined {code}"
    return f"预留 {code}" if zh else f"reserved {code}"


def system_type_name(code: int, *, zh: bool = False) -> str:
    """Name of a system type code (table 3 of the standard)."""
    return _lookup(SYSTEM_TYPES, code, zh)


def component_type_name(code: int, *, zh: bool = False) -> str:
    """Name of a component type code (table 4 of the standard)."""
    return _lookup(COMPONENT_TYPES, code, zh)


def analog_kind(code: int) -> AnalogKind:
    """Name, unit and scale of an analog type; unknown and user types read as raw numbers."""
    if code in ANALOG_TYPES:
        return ANALOG_TYPES[code]
    name = f"user-defined {code}" if code >= 128 else f"reserved {code}"
    return AnalogKind(name, name, "", 1)

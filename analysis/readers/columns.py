"""Column maps: how each vendor's text columns become canonical columns, declared in one place.

A column map is a mapping ``vendor column name -> Col(target, scale, offset)``: the canonical
value is ``vendor value * scale + offset``. A negative scale flips the sign (vendors that write
discharge current as positive are handled in their reader, where a mode column decides the sign).
Names are matched after stripping and case-folding. Targets are the canonical column names of
:mod:`cellbench.core.schema`, or one of the helper targets below which the tabular reader turns
into canonical columns:

``_datetime``   a wall-clock date-time string (read as UTC unless it carries a zone)
``_excel_days`` an Excel serial day number (days since 1899-12-30)
``_hms``        elapsed time as ``[d-]hh:mm:ss[.f]`` (converted to seconds, then scaled)
``_dq``         charge passed since the previous record, signed (scaled to Ah); readers use it
                for the per-cycle capacities
``_mode``       the vendor's text code of the record's state (kept as text for its reader)
``_skip``       a known column that carries nothing canonical; dropped without a warning

A user with an unusual export writes the same kind of map (a dict, or JSON with
``{"Vendor name": ["bdf_name", scale, offset]}``) and passes it to
:func:`cellbench.analysis.readers.read_csv`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cellbench.core.schema import SAMPLES, SPECTRA

MILLI = 1e-3
HOUR = 3600.0
MINUTE = 60.0

HELPER_TARGETS = ("_datetime", "_excel_days", "_hms", "_dq", "_mode", "_skip")


@dataclass(frozen=True)
class Col:
    """Target column (canonical name or helper), multiplier to canonical units, additive offset."""

    target: str
    scale: float = 1.0
    offset: float = 0.0


ColumnMap = Mapping[str, Col]


def key(name: str) -> str:
    """Normalised column name used for matching (strip, case-fold, collapse inner spaces)."""
    return " ".join(name.strip().casefold().split())


def valid_targets(kind: str) -> set[str]:
    cols = SAMPLES if kind == "samples" else SPECTRA
    return {c.name for c in cols} | set(HELPER_TARGETS)


def from_json(data: Mapping[str, object]) -> dict[str, Col]:
    """A column map from JSON: ``{"name": "bdf" | ["bdf", scale] | ["bdf", scale, offset]}``."""
    out: dict[str, Col] = {}
    for name, spec in data.items():
        if isinstance(spec, str):
            out[name] = Col(spec)
        elif isinstance(spec, list | tuple) and 1 <= len(spec) <= 3:
            target, *nums = spec
            if not isinstance(target, str) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in nums
            ):
                raise ValueError(f"column map entry {name!r}: expected [name, scale, offset]")
            out[name] = Col(target, *(float(v) for v in nums))
        else:
            raise ValueError(f"column map entry {name!r}: expected a name or [name, scale, offset]")
    return out


# Battery Data Format: machine-readable names are the canonical ones; the human-readable
# "Quantity / unit" labels of the BDF specification map onto them.
BDF_MACHINE: dict[str, Col] = {c.name: Col(c.name) for c in (*SAMPLES, *SPECTRA)}
BDF_HUMAN: dict[str, Col] = {
    "Test Time / s": Col("test_time_second"),
    "Unix Time / s": Col("unix_time_second"),
    "Voltage / V": Col("voltage_volt"),
    "Current / A": Col("current_ampere"),
    "Cycle Count / 1": Col("cycle_count"),
    "Step Count / 1": Col("step_count"),
    "Step Index / 1": Col("step_index"),
    "Temperature T1 / degC": Col("temperature_celsius"),
    "Ambient Temperature / degC": Col("_skip"),
    "Charging Capacity / Ah": Col("charging_capacity_ampere_hour"),
    "Discharging Capacity / Ah": Col("discharging_capacity_ampere_hour"),
    "Charging Energy / Wh": Col("charging_energy_watt_hour"),
    "Discharging Energy / Wh": Col("discharging_energy_watt_hour"),
    "Step Capacity / Ah": Col("step_capacity_ampere_hour"),
    "Internal Resistance / Ohm": Col("internal_resistance_ohm"),
    "Frequency / Hz": Col("frequency_hertz"),
    "Real Impedance / Ohm": Col("z_real_ohm"),
    "Imaginary Impedance / Ohm": Col("z_imag_ohm"),
}
# Names of the current BDF specification (battery-data-alliance/battery-data-format, the column
# model of ``bdf.normalizers``) where they differ from the earlier ``*_ampere_hour`` spellings
# above; quantities the canonical frames do not hold are known and skipped.
BDF_CURRENT: dict[str, Col] = {
    "charging_capacity_ah": Col("charging_capacity_ampere_hour"),
    "discharging_capacity_ah": Col("discharging_capacity_ampere_hour"),
    "charging_energy_wh": Col("charging_energy_watt_hour"),
    "discharging_energy_wh": Col("discharging_energy_watt_hour"),
    "step_capacity_ah": Col("step_capacity_ampere_hour"),
    "temperature_t1_celsius": Col("temperature_celsius"),
    "dc_internal_resistance_ohm": Col("internal_resistance_ohm"),
    "step_id": Col("step_index"),
    "applied_pressure_pa": Col("pressure_megapascal", 1e-6),
    # earlier human-readable spellings (BDF drafts of 2024, as in cellpy's batmo_bdf.csv)
    "Test Time / h": Col("test_time_second", 3600.0),
    "Test Time / min": Col("test_time_second", 60.0),
    "Charge Capacity / Ah": Col("charging_capacity_ampere_hour"),
    "Discharge Capacity / Ah": Col("discharging_capacity_ampere_hour"),
    "Charge Energy / Wh": Col("charging_energy_watt_hour"),
    "Discharge Energy / Wh": Col("discharging_energy_watt_hour"),
    "Protocol Name / 1": Col("_skip"),
    "Step Type / 1": Col("_skip"),
    "Applied Pressure / Pa": Col("pressure_megapascal", 1e-6),
    **dict.fromkeys(
        (
            "step_time_second", "net_capacity_ah", "cumulative_capacity_ah", "step_energy_wh",
            "net_energy_wh", "cumulative_energy_wh", "power_watt", "ambient_temperature_celsius",
            "ambient_pressure_pa", "record_index", "step_cumulative_capacity_ah",
            "step_cumulative_energy_wh", "ac_internal_resistance_ohm",
            *(f"temperature_t{k}_celsius" for k in range(2, 6)),
            "Step Time / s", "Net Capacity / Ah", "Cumulative Capacity / Ah", "Step Energy / Wh",
            "Net Energy / Wh", "Cumulative Energy / Wh", "Power / W", "Ambient Pressure / Pa",
            "Record Index / 1", "Step Cumulative Capacity / Ah", "Step Cumulative Energy / Wh",
            "AC Internal Resistance / Ohm",
            *(f"Temperature T{k} / degC" for k in range(2, 6)),
        ),
        Col("_skip"),
    ),
}  # fmt: skip
BDF: dict[str, Col] = {**BDF_MACHINE, **BDF_HUMAN, **BDF_CURRENT}

# The "PRIME INSTRUMENT FILE" generic export (the cellpy project's custom test format). The file
# states no units; the values (mass in g, currents of a milligram-scale half-cell) are those of
# mA and mAh, which is what the format's definition uses.
PRIME: dict[str, Col] = {
    "index": Col("_skip"),
    "test_time": Col("test_time_second"),
    "step_time": Col("_skip"),
    "date_stamp": Col("_excel_days"),
    "step": Col("step_index", 1.0, -1.0),
    "cycle": Col("cycle_count"),
    "current": Col("current_ampere", MILLI),
    "voltage": Col("voltage_volt"),
    "charge_capacity": Col("charging_capacity_ampere_hour", MILLI),
    "discharge_capacity": Col("discharging_capacity_ampere_hour", MILLI),
}

# Neware BTS csv export (BTSDA "export to csv", one row per record). Current signed (discharge
# negative), capacities in Ah accumulated within the step; step index from 1.
NEWARE_CSV: dict[str, Col] = {
    "DataPoint": Col("_skip"),
    "Cycle Index": Col("cycle_count"),
    "Step Index": Col("step_index", 1.0, -1.0),
    "Step Type": Col("_skip"),
    "Time": Col("_skip"),  # step time hh:mm:ss
    "Cumulative Time": Col("_hms"),
    "Total Time": Col("_hms"),
    "Current(A)": Col("current_ampere"),
    "Current(mA)": Col("current_ampere", MILLI),
    "Voltage(V)": Col("voltage_volt"),
    "Capacity(Ah)": Col("_skip"),
    "Capacity(mAh)": Col("_skip"),
    "Spec. Cap.(mAh/g)": Col("_skip"),
    "Chg. Cap.(Ah)": Col("charging_capacity_ampere_hour"),
    "Chg. Cap.(mAh)": Col("charging_capacity_ampere_hour", MILLI),
    "Chg. Spec. Cap.(mAh/g)": Col("_skip"),
    "DChg. Cap.(Ah)": Col("discharging_capacity_ampere_hour"),
    "DChg. Cap.(mAh)": Col("discharging_capacity_ampere_hour", MILLI),
    "DChg. Spec. Cap.(mAh/g)": Col("_skip"),
    "Energy(Wh)": Col("_skip"),
    "Energy(mWh)": Col("_skip"),
    "Spec. Energy(mWh/g)": Col("_skip"),
    "Chg. Energy(Wh)": Col("charging_energy_watt_hour"),
    "Chg. Energy(mWh)": Col("charging_energy_watt_hour", MILLI),
    "Chg. Spec. Energy(mWh/g)": Col("_skip"),
    "DChg. Energy(Wh)": Col("discharging_energy_watt_hour"),
    "DChg. Energy(mWh)": Col("discharging_energy_watt_hour", MILLI),
    "DChg. Spec. Energy(mWh/g)": Col("_skip"),
    "Date": Col("_datetime"),
    "Realtime": Col("_datetime"),
    "Power(W)": Col("_skip"),
    "Power(mW)": Col("_skip"),
    "dQ/dV(mAh/V)": Col("_skip"),
    "dQm/dV(mAh/V.g)": Col("_skip"),
    "Contact resistance(mO)": Col("_skip"),
    "Module start-stop switch": Col("_skip"),
    "T1(℃)": Col("temperature_celsius"),
    "T1(°C)": Col("temperature_celsius"),
}

# Arbin MITS Pro csv/xlsx export ("Channel" sheet) and the columns of the .res Channel_Normal_Table.
# Current signed (discharge negative); Charge_/Discharge_Capacity accumulate over the cycle.
ARBIN: dict[str, Col] = {
    "Data_Point": Col("_skip"),
    "Test_Time": Col("test_time_second"),
    "Test_Time(s)": Col("test_time_second"),
    "Date_Time": Col("_datetime"),
    "DateTime": Col("_excel_days"),
    "Step_Time": Col("_skip"),
    "Step_Time(s)": Col("_skip"),
    "Step_Index": Col("step_index", 1.0, -1.0),
    "Cycle_Index": Col("cycle_count"),
    "Current": Col("current_ampere"),
    "Current(A)": Col("current_ampere"),
    "Voltage": Col("voltage_volt"),
    "Voltage(V)": Col("voltage_volt"),
    "Charge_Capacity": Col("charging_capacity_ampere_hour"),
    "Charge_Capacity(Ah)": Col("charging_capacity_ampere_hour"),
    "Discharge_Capacity": Col("discharging_capacity_ampere_hour"),
    "Discharge_Capacity(Ah)": Col("discharging_capacity_ampere_hour"),
    "Charge_Energy": Col("charging_energy_watt_hour"),
    "Charge_Energy(Wh)": Col("charging_energy_watt_hour"),
    "Discharge_Energy": Col("discharging_energy_watt_hour"),
    "Discharge_Energy(Wh)": Col("discharging_energy_watt_hour"),
    "Internal_Resistance": Col("internal_resistance_ohm"),
    "Internal Resistance(Ohm)": Col("internal_resistance_ohm"),
    "Temperature": Col("temperature_celsius"),
    "Aux_Temperature_1(C)": Col("temperature_celsius"),
    "dV/dt": Col("_skip"),
    "dV/dt(V/s)": Col("_skip"),
    "Is_FC_Data": Col("_skip"),
    "AC_Impedance": Col("_skip"),
    "AC_Impedance(Ohm)": Col("_skip"),
    "ACI_Phase_Angle": Col("_skip"),
    "ACI_Phase_Angle(Deg)": Col("_skip"),
    "Test_ID": Col("_skip"),
}

# Maccor text export (tab separated). Current is unsigned: the Md column (C/D/R/O) gives the sign,
# applied in the Maccor reader. Test time is in the unit the header names.
MACCOR: dict[str, Col] = {
    "Rec": Col("_skip"),
    "Rec#": Col("_skip"),
    "Cycle P": Col("_skip"),
    "Cycle C": Col("cycle_count"),
    "Cyc#": Col("cycle_count"),
    "Step": Col("step_index", 1.0, -1.0),
    "TestTime": Col("test_time_second", MINUTE),
    "Test Time (sec)": Col("test_time_second"),
    "StepTime": Col("_skip"),
    "Step Time (sec)": Col("_skip"),
    "Cap. [Ah]": Col("step_capacity_ampere_hour"),
    "Amp-hr": Col("step_capacity_ampere_hour"),
    "Ener. [Wh]": Col("_skip"),
    "Watt-hr": Col("_skip"),
    "Current [A]": Col("current_ampere"),
    "Amps": Col("current_ampere"),
    "Voltage [V]": Col("voltage_volt"),
    "Volts": Col("voltage_volt"),
    "Md": Col("_mode"),
    "State": Col("_mode"),
    "ES": Col("_skip"),
    "DPT Time": Col("_datetime"),
    "DPt Time": Col("_datetime"),
    "Test (Sec)": Col("test_time_second"),  # the test clock (runs on across a pause)
    "Step (Sec)": Col("_skip"),
    **{f"VAR{i}": Col("_skip") for i in range(1, 16)},
    **{f"Loop{i}": Col("_skip") for i in range(1, 5)},
    **dict.fromkeys(
        (
            "ACImp/Ohms",
            "DCIR/Ohms",
            "WF Chg Cap",
            "WF Dis Cap",
            "WF Chg E",
            "WF Dis E",
            "Range",
            "Units",
        ),
        Col("_skip"),
    ),
}

# BioLogic EC-Lab column names, as in .mpt headers (the .mpr reader maps its column IDs onto the
# same names). Current is positive when anodic at the working electrode: charge for a cell whose
# working electrode is the positive one, which is how cyclers wire cells. Capacities here are the
# vendor's signed running totals; the BioLogic readers derive the per-cycle canonical capacities
# from dq (charge passed since the previous point).
BIOLOGIC: dict[str, Col] = {
    "mode": Col("_skip"),
    "ox/red": Col("_skip"),
    "error": Col("_skip"),
    "control changes": Col("_skip"),
    "Ns changes": Col("_skip"),
    "counter inc.": Col("_skip"),
    "Ns": Col("step_index"),
    "time/s": Col("test_time_second"),
    "step time/s": Col("_skip"),
    "control/V/mA": Col("_skip"),
    "control/V": Col("_skip"),
    "control/mA": Col("_skip"),
    "Ewe/V": Col("voltage_volt"),
    "<Ewe>/V": Col("voltage_volt"),
    "Ecell/V": Col("voltage_volt"),
    "I/mA": Col("current_ampere", MILLI),
    "<I>/mA": Col("current_ampere", MILLI),
    "dq/mA.h": Col("_dq", MILLI),
    "dQ/mA.h": Col("_dq", MILLI),
    "(Q-Qo)/mA.h": Col("_skip"),
    "(Q-Qo)/C": Col("_skip"),
    "half cycle": Col("_skip"),
    "Q charge/discharge/mA.h": Col("_skip"),
    "Q charge/mA.h": Col("_skip"),
    "Q discharge/mA.h": Col("_skip"),
    "Capacity/mA.h": Col("_skip"),
    "Efficiency/%": Col("_skip"),
    "Energy charge/W.h": Col("charging_energy_watt_hour"),
    "Energy discharge/W.h": Col("discharging_energy_watt_hour"),
    "Energy/W.h": Col("_skip"),
    "Capacitance charge/µF": Col("_skip"),
    "Capacitance discharge/µF": Col("_skip"),
    "cycle number": Col("cycle_count", 1.0, 1.0),
    "z cycle": Col("_skip"),
    "P/W": Col("_skip"),
    "x": Col("_skip"),
    "R/Ohm": Col("internal_resistance_ohm"),
    "Temperature/°C": Col("temperature_celsius"),
    "I Range": Col("_skip"),
    "Ece/V": Col("_skip"),
    "<Ece>/V": Col("_skip"),
    "Ewe-Ece/V": Col("_skip"),
    "Analog IN 1/V": Col("_skip"),
    "Analog IN 2/V": Col("_skip"),
    "Q-Qo/mA.h": Col("_skip"),
    "Rapp/Ohm": Col("_skip"),
    # impedance
    "freq/Hz": Col("frequency_hertz"),
    "Re(Z)/Ohm": Col("z_real_ohm"),
    "-Im(Z)/Ohm": Col("z_imag_ohm", -1.0),
    "|Z|/Ohm": Col("_skip"),
    "Phase(Z)/deg": Col("_skip"),
    "Cs/µF": Col("_skip"),
    "Cp/µF": Col("_skip"),
    "|Ewe|/V": Col("_skip"),
    "|I|/A": Col("_skip"),
    "Re(Y)/Ohm-1": Col("_skip"),
    "Im(Y)/Ohm-1": Col("_skip"),
    "|Y|/Ohm-1": Col("_skip"),
    "Phase(Y)/deg": Col("_skip"),
    "Re(Zce)/Ohm": Col("_skip"),
    "-Im(Zce)/Ohm": Col("_skip"),
    "|Zce|/Ohm": Col("_skip"),
    "Phase(Zce)/deg": Col("_skip"),
    "|Ece|/V": Col("_skip"),
    "Re(Zwe-ce)/Ohm": Col("_skip"),
    "-Im(Zwe-ce)/Ohm": Col("_skip"),
    "|Zwe-ce|/Ohm": Col("_skip"),
    "Phase(Zwe-ce)/deg": Col("_skip"),
    "THD Ewe/%": Col("_skip"),
    "NSD Ewe/%": Col("_skip"),
    "NSR Ewe/%": Col("_skip"),
    "THD I/%": Col("_skip"),
    "NSD I/%": Col("_skip"),
    "NSR I/%": Col("_skip"),
    "Re(Z)/ohm": Col("z_real_ohm"),
}

# Impedance text tables with a header line: CH Instruments, Parstat (VersaStudio export), Nova
# (Autolab) ASCII. Z'' is in the instrument convention unless the name says -Z''.
EIS_TABLE: dict[str, Col] = {
    # CH Instruments
    "Freq/Hz": Col("frequency_hertz"),
    "Z'/ohm": Col("z_real_ohm"),
    'Z"/ohm': Col("z_imag_ohm"),
    "Z/ohm": Col("_skip"),
    "Phase/deg": Col("_skip"),
    # Parstat / VersaStudio
    "Frequency (Hz)": Col("frequency_hertz"),
    "Zre (ohms)": Col("z_real_ohm"),
    "Zim (ohms)": Col("z_imag_ohm"),
    "Potential (V)": Col("dc_voltage_volt"),
    "Current (A)": Col("dc_current_ampere"),
    "Elapsed Time (s)": Col("test_time_second"),
    "|Vac| (V)": Col("_skip"),
    "|Iac| (A)": Col("_skip"),
    # Nova (Autolab)
    "Index": Col("_skip"),
    "Z' (Ω)": Col("z_real_ohm"),
    "-Z'' (Ω)": Col("z_imag_ohm", -1.0),
    "Z (Ω)": Col("_skip"),
    "-Phase (°)": Col("_skip"),
    "Time (s)": Col("test_time_second"),
    "Z' (Ohm)": Col("z_real_ohm"),
    "-Z'' (Ohm)": Col("z_imag_ohm", -1.0),
    "Z (Ohm)": Col("_skip"),
}

# In an impedance export the same EC-Lab names carry the DC level of each point.
BIOLOGIC_EIS: dict[str, Col] = {
    **BIOLOGIC,
    "Ewe/V": Col("dc_voltage_volt"),
    "<Ewe>/V": Col("dc_voltage_volt"),
    "I/mA": Col("dc_current_ampere", MILLI),
    "<I>/mA": Col("dc_current_ampere", MILLI),
    "z cycle": Col("sweep_index", 1.0, -1.0),
}

# Landt / Lanhe (LANDdt, BTSDA-like English export, "Record" sheet). Current signed (discharge
# negative), test time in seconds or hh:mm:ss; capacities per step without sign, so the reader
# integrates current for the per-cycle totals. No real Landt file is in the shared data: the
# names follow the export's documented headers, and unknown ones are reported, never guessed.
LANDT: dict[str, Col] = {
    "Index": Col("_skip"),
    "Record": Col("_skip"),
    "Cycle": Col("cycle_count"),
    "Step": Col("step_index", 1.0, -1.0),
    "State": Col("_skip"),
    "TestTime": Col("_hms"),
    "StepTime": Col("_skip"),
    "Current/mA": Col("current_ampere", MILLI),
    "Current/A": Col("current_ampere"),
    "Voltage/V": Col("voltage_volt"),
    "Capacity/mAh": Col("_skip"),
    "Capacity/Ah": Col("_skip"),
    "SpeCap/mAh/g": Col("_skip"),
    "Energy/mWh": Col("_skip"),
    "Energy/Wh": Col("_skip"),
    "SpeEnergy/mWh/g": Col("_skip"),
    "SysTime": Col("_datetime"),
    "dQ/dV/mAh/V": Col("_skip"),
    "dQm/dV/mAh/V.g": Col("_skip"),
    "Temperature/℃": Col("temperature_celsius"),
    "Temperature/°C": Col("temperature_celsius"),
}

//! The standard semantic types and units: DTDL v2's built-in table and DTDL v3's
//! QuantitativeTypes extension (`dtmi:dtdl:extension:quantitativeTypes;1`), which extends it.
//!
//! Owns only the data (which semantic type takes which unit type, which units each unit type
//! has, in which DTDL version) and look-ups over it. Whether an element may carry a semantic
//! type at all is the parser's business.

use super::DtdlVersion;

/// A unit type: its units in DTDL v2, and the units the v3 extension adds.
pub(crate) struct UnitType {
    pub(crate) name: &'static str,
    v2: &'static [&'static str],
    v3_extra: &'static [&'static str],
}

impl UnitType {
    /// The unit's canonical `'static` spelling, if `unit` belongs to this type in `version`.
    pub(crate) fn unit(&self, unit: &str, version: DtdlVersion) -> Option<&'static str> {
        self.units(version).find(|candidate| *candidate == unit)
    }

    pub(crate) fn units(&self, version: DtdlVersion) -> impl Iterator<Item = &'static str> {
        let extra: &'static [&'static str] = match version {
            DtdlVersion::V2 => &[],
            DtdlVersion::V3 => self.v3_extra,
        };
        self.v2.iter().chain(extra).copied()
    }
}

struct SemanticTypeDef {
    name: &'static str,
    unit_type: &'static UnitType,
    /// Defined only by DTDL v3's QuantitativeTypes extension.
    v3_only: bool,
}

/// The unit type of a standard semantic type, if `name` is one in `version`.
pub(crate) fn semantic_type(
    name: &str,
    version: DtdlVersion,
) -> Option<(&'static str, &'static UnitType)> {
    SEMANTIC_TYPES
        .iter()
        .find(|def| def.name == name && (version == DtdlVersion::V3 || !def.v3_only))
        .map(|def| (def.name, def.unit_type))
}

macro_rules! unit_type {
    ($ident:ident, $name:literal, [$($v2:literal),* $(,)?], [$($v3:literal),* $(,)?]) => {
        pub(crate) static $ident: UnitType = UnitType {
            name: $name,
            v2: &[$($v2),*],
            v3_extra: &[$($v3),*],
        };
    };
}

unit_type!(
    ACCELERATION,
    "AccelerationUnit",
    [
        "centimetrePerSecondSquared",
        "gForce",
        "metrePerSecondSquared"
    ],
    []
);
unit_type!(
    ANGLE,
    "AngleUnit",
    [
        "degreeOfArc",
        "minuteOfArc",
        "radian",
        "secondOfArc",
        "turn"
    ],
    []
);
unit_type!(
    ANGULAR_ACCELERATION,
    "AngularAccelerationUnit",
    ["radianPerSecondSquared"],
    []
);
unit_type!(
    ANGULAR_VELOCITY,
    "AngularVelocityUnit",
    [
        "degreePerSecond",
        "radianPerSecond",
        "revolutionPerMinute",
        "revolutionPerSecond"
    ],
    []
);
unit_type!(
    APPARENT_ENERGY,
    "ApparentEnergyUnit",
    [],
    [
        "gigavoltAmpereHour",
        "kilovoltAmpereHour",
        "megavoltAmpereHour",
        "voltAmpereHour"
    ]
);
unit_type!(
    APPARENT_POWER,
    "ApparentPowerUnit",
    [],
    [
        "gigavoltAmpere",
        "kilovoltAmpere",
        "megavoltAmpere",
        "millivoltAmpere",
        "voltAmpere"
    ]
);
unit_type!(
    AREA,
    "AreaUnit",
    [
        "acre",
        "hectare",
        "squareCentimetre",
        "squareFoot",
        "squareInch",
        "squareKilometre",
        "squareMetre",
        "squareMillimetre"
    ],
    []
);
unit_type!(
    CAPACITANCE,
    "CapacitanceUnit",
    [
        "farad",
        "microfarad",
        "millifarad",
        "nanofarad",
        "picofarad"
    ],
    []
);
unit_type!(
    CHARGE,
    "ChargeUnit",
    ["coulomb"],
    ["ampereHour", "milliampereHour"]
);
unit_type!(
    CURRENT,
    "CurrentUnit",
    ["ampere", "microampere", "milliampere"],
    ["kiloampere"]
);
unit_type!(
    DATA_RATE,
    "DataRateUnit",
    [
        "bitPerSecond",
        "bytePerSecond",
        "exbibitPerSecond",
        "exbibytePerSecond",
        "gibibitPerSecond",
        "gibibytePerSecond",
        "kibibitPerSecond",
        "kibibytePerSecond",
        "mebibitPerSecond",
        "mebibytePerSecond",
        "tebibitPerSecond",
        "tebibytePerSecond",
        "yobibitPerSecond",
        "yobibytePerSecond",
        "zebibitPerSecond",
        "zebibytePerSecond"
    ],
    []
);
unit_type!(
    DATA_SIZE,
    "DataSizeUnit",
    [
        "bit", "byte", "exbibit", "exbibyte", "gibibit", "gibibyte", "kibibit", "kibibyte",
        "mebibit", "mebibyte", "tebibit", "tebibyte", "yobibit", "yobibyte", "zebibit", "zebibyte"
    ],
    []
);
unit_type!(
    DENSITY,
    "DensityUnit",
    ["gramPerCubicMetre", "kilogramPerCubicMetre"],
    ["microgramPerCubicMetre", "milligramPerCubicMetre"]
);
unit_type!(
    ENERGY,
    "EnergyUnit",
    [
        "electronvolt",
        "gigajoule",
        "joule",
        "kilojoule",
        "kilowattHour",
        "megaelectronvolt",
        "megajoule"
    ],
    [
        "britishThermalUnit",
        "gigawattHour",
        "kiloBritishThermalUnit",
        "megawattHour",
        "milliwattHour",
        "terawattHour",
        "wattHour"
    ]
);
unit_type!(FORCE, "ForceUnit", ["newton", "ounce", "pound", "ton"], []);
unit_type!(
    FREQUENCY,
    "FrequencyUnit",
    ["gigahertz", "hertz", "kilohertz", "megahertz"],
    ["millihertz"]
);
unit_type!(ILLUMINANCE, "IlluminanceUnit", ["footcandle", "lux"], []);
unit_type!(
    INDUCTANCE,
    "InductanceUnit",
    ["henry", "microhenry", "millihenry"],
    []
);
unit_type!(
    IONIZING_RADIATION_DOSE,
    "IonizingRadiationDoseUnit",
    [],
    [
        "gray",
        "microgray",
        "microsievert",
        "milligray",
        "millisievert",
        "sievert"
    ]
);
unit_type!(IRRADIANCE, "IrradianceUnit", [], ["wattPerSquareMetre"]);
unit_type!(
    LENGTH,
    "LengthUnit",
    [
        "astronomicalUnit",
        "centimetre",
        "foot",
        "inch",
        "kilometre",
        "metre",
        "micrometre",
        "mile",
        "millimetre",
        "nanometre",
        "nauticalMile"
    ],
    []
);
unit_type!(LUMINANCE, "LuminanceUnit", ["candelaPerSquareMetre"], []);
unit_type!(LUMINOUS_FLUX, "LuminousFluxUnit", ["lumen"], []);
unit_type!(LUMINOUS_INTENSITY, "LuminousIntensityUnit", ["candela"], []);
unit_type!(MAGNETIC_FLUX, "MagneticFluxUnit", ["maxwell", "weber"], []);
unit_type!(
    MAGNETIC_INDUCTION,
    "MagneticInductionUnit",
    ["tesla"],
    ["gauss"]
);
unit_type!(
    MASS,
    "MassUnit",
    [
        "gram",
        "kilogram",
        "microgram",
        "milligram",
        "slug",
        "tonne"
    ],
    ["massPound"]
);
unit_type!(
    MASS_FLOW_RATE,
    "MassFlowRateUnit",
    [
        "gramPerHour",
        "gramPerSecond",
        "kilogramPerHour",
        "kilogramPerSecond"
    ],
    ["massPoundPerHour"]
);
unit_type!(
    POWER,
    "PowerUnit",
    [
        "gigawatt",
        "horsepower",
        "kilowatt",
        "kilowattHourPerYear",
        "megawatt",
        "microwatt",
        "milliwatt",
        "watt"
    ],
    [
        "britishThermalUnitPerHour",
        "gigajoulePerHour",
        "joulePerHour",
        "joulePerSecond",
        "kiloBritishThermalUnitPerHour",
        "kilojoulePerHour",
        "kilojoulePerSecond",
        "megajoulePerHour",
        "tonOfRefrigeration"
    ]
);
unit_type!(
    PRESSURE,
    "PressureUnit",
    [
        "bar",
        "inchesOfMercury",
        "inchesOfWater",
        "kilopascal",
        "millibar",
        "millimetresOfMercury",
        "pascal",
        "poundPerSquareInch"
    ],
    ["decapascal", "hectopascal"]
);
unit_type!(
    RADIOACTIVITY,
    "RadioactivityUnit",
    [],
    [
        "becquerel",
        "gigabecquerel",
        "kilobecquerel",
        "megabecquerel"
    ]
);
unit_type!(
    REACTIVE_ENERGY,
    "ReactiveEnergyUnit",
    [],
    [
        "gigavoltAmpereReactiveHour",
        "kilovoltAmpereReactiveHour",
        "megavoltAmpereReactiveHour",
        "voltAmpereReactiveHour"
    ]
);
unit_type!(
    REACTIVE_POWER,
    "ReactivePowerUnit",
    [],
    [
        "gigavoltAmpereReactive",
        "kilovoltAmpereReactive",
        "megavoltAmpereReactive",
        "millivoltAmpereReactive",
        "voltAmpereReactive"
    ]
);
unit_type!(
    RESISTANCE,
    "ResistanceUnit",
    ["kiloohm", "megaohm", "milliohm", "ohm"],
    []
);
unit_type!(SOUND_PRESSURE, "SoundPressureUnit", ["bel", "decibel"], []);
unit_type!(
    TEMPERATURE,
    "TemperatureUnit",
    ["degreeCelsius", "degreeFahrenheit", "kelvin"],
    []
);
unit_type!(
    TIME,
    "TimeUnit",
    [
        "day",
        "hour",
        "microsecond",
        "millisecond",
        "minute",
        "nanosecond",
        "second",
        "year"
    ],
    []
);
unit_type!(TORQUE, "TorqueUnit", ["newtonMetre"], []);
unit_type!(
    UNITLESS,
    "Unitless",
    ["percent", "unity"],
    [
        "partsPerBillion",
        "partsPerMillion",
        "partsPerQuadrillion",
        "partsPerTrillion"
    ]
);
unit_type!(
    VELOCITY,
    "VelocityUnit",
    [
        "centimetrePerSecond",
        "kilometrePerHour",
        "kilometrePerSecond",
        "knot",
        "metrePerHour",
        "metrePerSecond",
        "milePerHour",
        "milePerSecond"
    ],
    []
);
unit_type!(
    VOLTAGE,
    "VoltageUnit",
    ["kilovolt", "megavolt", "microvolt", "millivolt", "volt"],
    []
);
unit_type!(
    VOLUME,
    "VolumeUnit",
    [
        "cubicCentimetre",
        "cubicFoot",
        "cubicInch",
        "cubicMetre",
        "fluidOunce",
        "gallon",
        "litre",
        "millilitre"
    ],
    []
);
unit_type!(
    VOLUME_FLOW_RATE,
    "VolumeFlowRateUnit",
    [
        "litrePerHour",
        "litrePerSecond",
        "millilitrePerHour",
        "millilitrePerSecond"
    ],
    [
        "cubicFootPerMinute",
        "cubicMetrePerHour",
        "cubicMetrePerMinute",
        "cubicMetrePerSecond",
        "gallonPerHour",
        "gallonPerMinute",
        "litrePerMinute",
        "millilitrePerMinute"
    ]
);

macro_rules! semantic_types {
    ($(($name:literal, $unit_type:ident, $v3_only:literal)),* $(,)?) => {
        static SEMANTIC_TYPES: &[SemanticTypeDef] = &[
            $(SemanticTypeDef { name: $name, unit_type: &$unit_type, v3_only: $v3_only }),*
        ];
    };
}

semantic_types![
    ("Acceleration", ACCELERATION, false),
    ("Angle", ANGLE, false),
    ("AngularAcceleration", ANGULAR_ACCELERATION, false),
    ("AngularVelocity", ANGULAR_VELOCITY, false),
    ("ApparentEnergy", APPARENT_ENERGY, true),
    ("ApparentPower", APPARENT_POWER, true),
    ("Area", AREA, false),
    ("Capacitance", CAPACITANCE, false),
    ("Concentration", UNITLESS, true),
    ("Current", CURRENT, false),
    ("DataRate", DATA_RATE, false),
    ("DataSize", DATA_SIZE, false),
    ("Density", DENSITY, false),
    ("Distance", LENGTH, false),
    ("ElectricCharge", CHARGE, false),
    ("Energy", ENERGY, false),
    ("EnergyRate", POWER, true),
    ("Force", FORCE, false),
    ("Frequency", FREQUENCY, false),
    ("Humidity", DENSITY, false),
    ("Illuminance", ILLUMINANCE, false),
    ("Inductance", INDUCTANCE, false),
    ("IonizingRadiationDose", IONIZING_RADIATION_DOSE, true),
    ("Irradiance", IRRADIANCE, true),
    ("Latitude", ANGLE, false),
    ("Length", LENGTH, false),
    ("Longitude", ANGLE, false),
    ("Luminance", LUMINANCE, false),
    ("Luminosity", POWER, false),
    ("LuminousFlux", LUMINOUS_FLUX, false),
    ("LuminousIntensity", LUMINOUS_INTENSITY, false),
    ("MagneticFlux", MAGNETIC_FLUX, false),
    ("MagneticInduction", MAGNETIC_INDUCTION, false),
    ("Mass", MASS, false),
    ("MassFlowRate", MASS_FLOW_RATE, false),
    ("Power", POWER, false),
    ("Pressure", PRESSURE, false),
    ("Radioactivity", RADIOACTIVITY, true),
    ("ReactiveEnergy", REACTIVE_ENERGY, true),
    ("ReactivePower", REACTIVE_POWER, true),
    ("RelativeDensity", UNITLESS, true),
    ("RelativeHumidity", UNITLESS, false),
    ("Resistance", RESISTANCE, false),
    ("SoundPressure", SOUND_PRESSURE, false),
    ("Temperature", TEMPERATURE, false),
    ("Thrust", FORCE, false),
    ("TimeSpan", TIME, false),
    ("Torque", TORQUE, false),
    ("Velocity", VELOCITY, false),
    ("Voltage", VOLTAGE, false),
    ("Volume", VOLUME, false),
    ("VolumeFlowRate", VOLUME_FLOW_RATE, false),
];

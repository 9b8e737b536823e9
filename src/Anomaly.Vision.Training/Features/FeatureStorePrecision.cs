// Declared here, beside the trainers that take it, in the namespace of the ML.NET options that expose it, so that users need no second using.
using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>How a <see cref="FeatureStore"/> keeps feature values.</summary>
public enum FeatureStorePrecision
{
    /// <summary>32-bit floats: values are returned exactly as added.</summary>
    Float32 = 0,

    /// <summary>16-bit floats (<see cref="Half"/>): half the memory; values are rounded to the nearest half.</summary>
    Float16 = 1,
}

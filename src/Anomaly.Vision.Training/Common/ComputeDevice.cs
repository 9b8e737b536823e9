// Declared here, beside the trainers that take it, in the namespace of the ML.NET options that expose it, so that users need no second using.
namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Where training and TorchSharp inference run.</summary>
public enum ComputeDevice
{
    /// <summary>CUDA when a CUDA build of TorchSharp is present and sees a GPU, else the CPU.</summary>
    Auto = 0,

    /// <summary>Always the CPU.</summary>
    Cpu = 1,

    /// <summary>A CUDA GPU; fails when none can be used.</summary>
    Cuda = 2,
}

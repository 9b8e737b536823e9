namespace Anomaly.Vision.Training;

/// <summary>Settings of CFlow's decoder training; the defaults are anomalib's CFlow defaults.</summary>
public sealed class CflowTrainingOptions
{
    /// <summary>Length of the 2-D positional code that conditions the flows; a positive multiple of 4 up to <see cref="MaxConditionVectorSize"/>. Default 128.</summary>
    public int ConditionVectorSize { get; set; } = 128;

    /// <summary>Number of coupling blocks per decoder, 1 to <see cref="MaxCouplingBlocks"/>. Default 8.</summary>
    public int CouplingBlocks { get; set; } = 8;

    /// <summary>Clamping α of the affine coupling: log-scales are α·tanh(·). Default 1.9.</summary>
    public float ClampAlpha { get; set; } = 1.9f;

    /// <summary>Mix channels between blocks with a random rotation instead of a random permutation
    /// (slow to build for many channels). Default false.</summary>
    public bool PermuteSoft { get; set; }

    /// <summary>Number of feature fibers (positions) per optimizer step. Default 64.</summary>
    public int FiberBatchSize { get; set; } = 64;

    /// <summary>Adam learning rate. Default 1e-4.</summary>
    public float LearningRate { get; set; } = 1e-4f;

    /// <summary>Passes over the training images. Default 50, anomalib's CFlow configuration.</summary>
    public int Epochs { get; set; } = 50;

    /// <summary>Images per training batch; each layer's fibers of a batch are shuffled together. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Seed of the initial weights, permutations and shuffling. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Where training runs. Default <see cref="ComputeDevice.Auto"/>.</summary>
    public ComputeDevice Device { get; set; } = ComputeDevice.Auto;

    /// <summary>Which CUDA device training uses when it runs on CUDA (0 is the first). Default 0.</summary>
    public int CudaDeviceIndex { get; set; }

    /// <summary>Largest <see cref="ConditionVectorSize"/> accepted: 4096.</summary>
    public const int MaxConditionVectorSize = 4096;

    /// <summary>Largest <see cref="CouplingBlocks"/> accepted: 64.</summary>
    public const int MaxCouplingBlocks = 64;

    /// <summary>Checks every setting; the trainer does so before it starts.</summary>
    /// <param name="parameterName">The parameter name the exception carries.</param>
    /// <exception cref="ArgumentException">A setting is out of range; the message names it.</exception>
    public void Validate(string parameterName)
    {
        if (CudaDeviceIndex < 0)
            throw new ArgumentException($"{nameof(CudaDeviceIndex)} must be 0 or more, not {CudaDeviceIndex}.", parameterName);
        if (ConditionVectorSize <= 0 || ConditionVectorSize % 4 != 0 || ConditionVectorSize > MaxConditionVectorSize)
            throw new ArgumentException(
                $"{nameof(ConditionVectorSize)} must be a positive multiple of 4 up to {MaxConditionVectorSize} (got {ConditionVectorSize}).", parameterName);
        if (CouplingBlocks <= 0 || CouplingBlocks > MaxCouplingBlocks)
            throw new ArgumentException($"{nameof(CouplingBlocks)} must be between 1 and {MaxCouplingBlocks} (got {CouplingBlocks}).", parameterName);
        if (!(ClampAlpha > 0) || float.IsInfinity(ClampAlpha))
            throw new ArgumentException($"{nameof(ClampAlpha)} must be positive and finite (got {ClampAlpha}).", parameterName);
        if (FiberBatchSize <= 0)
            throw new ArgumentException($"{nameof(FiberBatchSize)} must be positive (got {FiberBatchSize}).", parameterName);
        if (!(LearningRate > 0) || float.IsInfinity(LearningRate))
            throw new ArgumentException($"{nameof(LearningRate)} must be positive and finite (got {LearningRate}).", parameterName);
        if (Epochs <= 0)
            throw new ArgumentException($"{nameof(Epochs)} must be positive (got {Epochs}).", parameterName);
        if (BatchSize <= 0)
            throw new ArgumentException($"{nameof(BatchSize)} must be positive (got {BatchSize}).", parameterName);
        if (!Enum.IsDefined(Device))
            throw new ArgumentException($"{nameof(Device)} {Device} is not a known device.", parameterName);
    }
}

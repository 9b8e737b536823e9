namespace Anomaly.Vision.Training;

/// <summary>Settings of <see cref="CfaTrainer"/>; the defaults are those of anomalib's CFA.</summary>
public sealed class CfaTrainingOptions
{
    /// <summary>Memory-bank compression: when above 1, the bank's H·W patch centroids are clustered with k-means into (H·W)/GammaC centres. Default 1.</summary>
    public int GammaC { get; set; } = 1;

    /// <summary>Descriptor compression: the descriptor has (sum of layer channels)/GammaD output channels. Default 1.</summary>
    public int GammaD { get; set; } = 1;

    /// <summary>Number of nearest memory-bank entries pulled inside the hypersphere (and used for scoring). Default 3.</summary>
    public int NumNearestNeighbors { get; set; } = 3;

    /// <summary>Number of hard negative features: the loss pushes the nearest entries from this rank on out of the hypersphere. Default 3.</summary>
    public int NumHardNegativeFeatures { get; set; } = 3;

    /// <summary>Hypersphere radius; constant during training, as in anomalib. Default 1e-5.</summary>
    public float Radius { get; set; } = 1e-5f;

    /// <summary>Number of passes over the training features. Default 30.</summary>
    public int Epochs { get; set; } = 30;

    /// <summary>AdamW (AMSGrad) learning rate. Default 1e-3.</summary>
    public float LearningRate { get; set; } = 1e-3f;

    /// <summary>AdamW weight decay (the optimizer uses AMSGrad, as anomalib's CFA does). Default 5e-4.</summary>
    public float WeightDecay { get; set; } = 5e-4f;

    /// <summary>Images per optimisation step and per memory-bank batch. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Seed of the descriptor's initial weights, the batch shuffling and k-means. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Where training runs. Default <see cref="ComputeDevice.Auto"/>.</summary>
    public ComputeDevice Device { get; set; } = ComputeDevice.Auto;

    /// <summary>Which CUDA device training uses when it runs on CUDA (0 is the first). Default 0.</summary>
    public int CudaDeviceIndex { get; set; }

    /// <summary>Checks every setting; the trainer does so before it starts.</summary>
    /// <param name="parameterName">The parameter name the exception carries.</param>
    /// <exception cref="ArgumentException">A setting is out of range; the message names it.</exception>
    public void Validate(string parameterName)
    {
        if (CudaDeviceIndex < 0)
            throw new ArgumentException($"{nameof(CudaDeviceIndex)} must be 0 or more, not {CudaDeviceIndex}.", parameterName);
        if (GammaC < 1)
            throw new ArgumentException($"GammaC must be at least 1 (got {GammaC}).", parameterName);
        if (GammaD < 1)
            throw new ArgumentException($"GammaD must be at least 1 (got {GammaD}).", parameterName);
        if (NumNearestNeighbors < 1)
            throw new ArgumentException($"NumNearestNeighbors must be at least 1 (got {NumNearestNeighbors}).", parameterName);
        if (NumHardNegativeFeatures < 0)
            throw new ArgumentException($"NumHardNegativeFeatures must not be negative (got {NumHardNegativeFeatures}).", parameterName);
        if (!float.IsFinite(Radius) || !(Radius > 0))
            throw new ArgumentException($"Radius must be a finite positive number (got {Radius}).", parameterName);
        if (Epochs < 0)
            throw new ArgumentException($"Epochs must not be negative (got {Epochs}).", parameterName);
        if (!float.IsFinite(LearningRate) || LearningRate <= 0)
            throw new ArgumentException($"LearningRate must be a finite positive number (got {LearningRate}).", parameterName);
        if (!float.IsFinite(WeightDecay) || WeightDecay < 0)
            throw new ArgumentException($"WeightDecay must be a finite non-negative number (got {WeightDecay}).", parameterName);
        if (BatchSize < 1)
            throw new ArgumentException($"BatchSize must be at least 1 (got {BatchSize}).", parameterName);
        if (!Enum.IsDefined(Device))
            throw new ArgumentException($"Unknown device {Device}.", parameterName);
    }
}

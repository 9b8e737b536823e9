namespace Anomaly.Vision.Training;

/// <summary>Settings of <see cref="DfmTrainer.Fit"/>; the defaults are those of anomalib's DFM.</summary>
public sealed class DfmTrainingOptions
{
    /// <summary>
    /// Side of the square average-pooling window (stride equal to the side, no padding) applied to the layer
    /// map before it is flattened into one feature vector per image; 1 turns pooling off. Default 4.
    /// </summary>
    public int PoolingKernelSize { get; set; } = 4;

    /// <summary>
    /// How many principal components to keep. A value in (0, 1] is a share of the training variance: the
    /// kept count is the first (0-based) index at which the cumulative explained-variance ratio reaches the
    /// share, exactly as anomalib's PCA computes it, which is one component fewer than the count whose
    /// variance reaches the share. A value above 1 is a component count (its integer part). Default 0.97.
    /// </summary>
    public float VarianceShare { get; set; } = 0.97f;

    /// <summary>
    /// The score the model computes: <see cref="DfmScoreType.Fre"/> (feature reconstruction error, with an anomaly map)
    /// or <see cref="DfmScoreType.Nll"/> (negative log-likelihood under a Gaussian, image score only). Default Fre.
    /// </summary>
    public DfmScoreType ScoreType { get; set; } = DfmScoreType.Fre;

    /// <summary>Where the PCA and Gaussian fits run. Default <see cref="ComputeDevice.Auto"/>.</summary>
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
        if (PoolingKernelSize < 1)
            throw new ArgumentException($"PoolingKernelSize must be at least 1; it is {PoolingKernelSize}.", parameterName);
        if (!float.IsFinite(VarianceShare) || VarianceShare <= 0)
            throw new ArgumentException($"VarianceShare must be a share in (0, 1] or a component count above 1; it is {VarianceShare}.", parameterName);
        if (!Enum.IsDefined(ScoreType))
            throw new ArgumentException($"Unknown score type {ScoreType}.", parameterName);
    }
}

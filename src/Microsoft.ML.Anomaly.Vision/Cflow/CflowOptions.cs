using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Options of <see cref="CflowEstimator"/> (CFlow, conditional normalizing flows, arXiv 2107.12571): one flow
/// per backbone layer models the likelihood of each feature vector given its position. Defaults are anomalib's
/// (its backbone is wide_resnet50_2 with layers 2–4; the same layer names apply to ResNet-18).
/// </summary>
public sealed class CflowOptions : BackboneDetectorOptions
{
    private static readonly CflowTrainingOptions Defaults = new();

    /// <summary>Backbone layers, one flow each. Default layer2, layer3, layer4.</summary>
    public string[] Layers { get; set; } = ["layer2", "layer3", "layer4"];

    /// <inheritdoc cref="CflowTrainingOptions.ConditionVectorSize"/>
    public int ConditionVectorSize { get; set; } = Defaults.ConditionVectorSize;

    /// <inheritdoc cref="CflowTrainingOptions.CouplingBlocks"/>
    public int CouplingBlocks { get; set; } = Defaults.CouplingBlocks;

    /// <inheritdoc cref="CflowTrainingOptions.ClampAlpha"/>
    public float ClampAlpha { get; set; } = Defaults.ClampAlpha;

    /// <inheritdoc cref="CflowTrainingOptions.PermuteSoft"/>
    public bool PermuteSoft { get; set; } = Defaults.PermuteSoft;

    /// <inheritdoc cref="CflowTrainingOptions.FiberBatchSize"/>
    public int FiberBatchSize { get; set; } = Defaults.FiberBatchSize;

    /// <inheritdoc cref="CflowTrainingOptions.LearningRate"/>
    public float LearningRate { get; set; } = Defaults.LearningRate;

    /// <inheritdoc cref="CflowTrainingOptions.Epochs"/>
    public int Epochs { get; set; } = Defaults.Epochs;

    internal override IReadOnlyList<string> BackboneLayers => Layers ?? [];

    internal CflowTrainingOptions ToTrainingOptions(FitRun? run = null) => new()
    {
        ConditionVectorSize = ConditionVectorSize,
        CouplingBlocks = CouplingBlocks,
        ClampAlpha = ClampAlpha,
        PermuteSoft = PermuteSoft,
        FiberBatchSize = FiberBatchSize,
        LearningRate = LearningRate,
        Epochs = Epochs,
        BatchSize = BatchSize,
        Seed = run?.Seed ?? 0,
        Device = run?.Device ?? Device,
        CudaDeviceIndex = run?.CudaDeviceIndex ?? 0,
    };

    /// <summary>
    /// Checks, before any feature is extracted, that a full training batch gives every layer at least
    /// <see cref="FiberBatchSize"/> fibers (positions × images); the message names the layer as <see cref="Layers"/> does.
    /// </summary>
    /// <param name="shapes">The backbone's layer shapes at the input size, in the order of <see cref="Layers"/>.</param>
    /// <param name="rowCount">The training data's row count, when known.</param>
    internal void CheckFiberBatch(IReadOnlyList<LayerShape> shapes, long? rowCount)
    {
        long fullBatch = rowCount is long rows and > 0 ? Math.Min(BatchSize, rows) : BatchSize;
        for (int l = 0; l < shapes.Count; l++)
        {
            long fibers = fullBatch * shapes[l].Height * shapes[l].Width;
            if (fibers < FiberBatchSize)
                throw new ArgumentException(
                    $"Layer '{Layers[l]}' gives a {shapes[l].Height}×{shapes[l].Width} grid at {ImageHeight}×{ImageWidth} pixels, so a batch of " +
                    $"{fullBatch} images has only {fibers} fibers there, fewer than {nameof(FiberBatchSize)} {FiberBatchSize}: lower " +
                    $"{nameof(FiberBatchSize)}, raise {nameof(BatchSize)} or {nameof(ImageHeight)}/{nameof(ImageWidth)}, or leave '{Layers[l]}' out of {nameof(Layers)}.",
                    "options");
        }
    }

    internal override void ValidateAll(string paramName)
    {
        ValidateBackboneOptions(paramName);
        ToTrainingOptions().Validate(paramName);
    }
}

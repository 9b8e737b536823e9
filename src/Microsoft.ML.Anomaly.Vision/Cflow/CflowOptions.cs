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
    /// <summary>Backbone layers, one flow each. Default layer2, layer3, layer4.</summary>
    public string[] Layers { get; set; } = ["layer2", "layer3", "layer4"];

    /// <summary>Size of the positional-encoding condition vector (a multiple of 4). Default 128.</summary>
    public int ConditionVectorSize { get; set; } = 128;

    /// <summary>Coupling blocks per flow. Default 8.</summary>
    public int CouplingBlocks { get; set; } = 8;

    /// <summary>Clamp of the coupling blocks' soft scaling. Default 1.9.</summary>
    public float ClampAlpha { get; set; } = 1.9f;

    /// <summary>Random orthogonal mixing between blocks instead of a random permutation. Default false.</summary>
    public bool PermuteSoft { get; set; }

    /// <summary>Feature vectors per optimisation step. Default 64.</summary>
    public int FiberBatchSize { get; set; } = 64;

    /// <summary>Adam learning rate. Default 1e-4.</summary>
    public float LearningRate { get; set; } = 1e-4f;

    /// <summary>Training epochs. Default 50.</summary>
    public int Epochs { get; set; } = 50;

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

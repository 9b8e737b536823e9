// Declared here, beside the trainers that take it, in the namespace of the ML.NET options that expose it, so that users need no second using.
namespace Microsoft.ML.Anomaly.Vision;

/// <summary>A progress report from a detector's Fit: which stage runs and, while training, the epoch and its loss.</summary>
/// <param name="Stage">What runs now, for example "features", "memory bank" or "training".</param>
/// <param name="Step">Steps done in this stage (images for feature extraction, epochs for training).</param>
/// <param name="Steps">Steps this stage takes in all.</param>
/// <param name="Loss">The mean loss of the last finished epoch; <see cref="double.NaN"/> where the stage has none.</param>
public sealed record TrainingProgress(string Stage, int Step, int Steps, double Loss);

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>What a backbone is: its name, where its weights come from, and whether they are trained.</summary>
/// <param name="Name">The architecture and weights, for example <c>ResNet-18 (ImageNet)</c>.</param>
/// <param name="Source">Where the weights come from: a NuGet package, a checkpoint file, random weights.</param>
/// <param name="IsPretrained">False when the weights are random (see <see cref="ResNetBackbones.CreateUntrainedResNet18"/>).</param>
public sealed record BackboneDescription(string Name, string Source, bool IsPretrained)
{
    /// <summary>One line for logs and reports, for example <c>ResNet-18 (ImageNet), pretrained, from …</c>.</summary>
    public override string ToString() => $"{Name}, {(IsPretrained ? "pretrained" : "UNTRAINED random weights")}, from {Source}";
}

/// <summary>
/// A backbone ONNX model the detectors' options accept (<see cref="BackboneDetectorOptions.Backbone"/>) without a
/// file on disk: the model is made (converted or written) at its first use and kept in memory.
/// </summary>
/// <remarks>Get one from <see cref="ImageNetBackbones.ResNet18"/> or <see cref="ResNetBackbones.FromTorchvisionCheckpoint"/>.
/// Detectors store the model's bytes in their saved .zip, so a saved model never needs the source again.</remarks>
public sealed class BackboneModel
{
    private readonly Lazy<byte[]> _onnx;

    internal BackboneModel(BackboneDescription description, Func<byte[]> createOnnx)
    {
        Description = description;
        _onnx = new Lazy<byte[]>(createOnnx, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The backbone's name, source and whether it is pretrained (also in the ONNX model's metadata).</summary>
    public BackboneDescription Description { get; }

    /// <summary>The serialized ONNX model (input <c>input</c>, outputs <c>layer1</c> … <c>layer4</c>), made on the first call.</summary>
    /// <returns>The same array on every call; do not modify it.</returns>
    public byte[] GetOnnxBytes() => _onnx.Value;

    /// <summary>Writes the ONNX model to a file (atomically, see <see cref="AtomicFile"/>).</summary>
    /// <param name="path">The .onnx file to write; replaced when it exists.</param>
    public void SaveOnnx(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        AtomicFile.WriteAllBytes(path, GetOnnxBytes());
    }

    /// <inheritdoc />
    public override string ToString() => Description.ToString();
}

namespace Anomaly.Vision.Training;

/// <summary>The shape of one backbone layer's feature map for one image.</summary>
/// <param name="Channels">Number of channels.</param>
/// <param name="Height">Feature-map height.</param>
/// <param name="Width">Feature-map width.</param>
public readonly record struct LayerShape(int Channels, int Height, int Width)
{
    /// <summary>Number of values in one image's map: channels × height × width.</summary>
    public int Size => Channels * Height * Width;
}

/// <summary>
/// Multi-scale backbone features of a set of images, read one image and layer at a time.
/// The training code reads features through this interface so that they are extracted once and
/// may live in memory, in half precision or on disk.
/// </summary>
public interface IFeatureSource
{
    /// <summary>Number of images.</summary>
    int Count { get; }

    /// <summary>Shape of each layer's map (the same for every image).</summary>
    IReadOnlyList<LayerShape> Layers { get; }

    /// <summary>Copies image <paramref name="image"/>'s map of layer <paramref name="layer"/>, in CHW order, into <paramref name="destination"/>.</summary>
    /// <param name="image">Image index, 0 ≤ image &lt; <see cref="Count"/>.</param>
    /// <param name="layer">Layer index into <see cref="Layers"/>.</param>
    /// <param name="destination">Receives exactly <see cref="LayerShape.Size"/> values.</param>
    void Read(int image, int layer, Span<float> destination);
}

/// <summary>An <see cref="IFeatureSource"/> over float arrays held in memory.</summary>
public sealed class InMemoryFeatureSource : IFeatureSource
{
    private readonly List<float[][]> _images = new();

    /// <summary>Creates an empty source for maps of the given layer shapes.</summary>
    /// <param name="layers">Shape of each layer.</param>
    public InMemoryFeatureSource(IReadOnlyList<LayerShape> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0)
            throw new ArgumentException("At least one layer is needed.", nameof(layers));
        foreach (var shape in layers)
            if (shape.Channels <= 0 || shape.Height <= 0 || shape.Width <= 0)
                throw new ArgumentException($"Layer shape {shape} has a non-positive dimension.", nameof(layers));
        Layers = layers.ToArray();
    }

    /// <inheritdoc />
    public int Count => _images.Count;

    /// <inheritdoc />
    public IReadOnlyList<LayerShape> Layers { get; }

    /// <summary>Adds one image's maps, one CHW array per layer; the arrays are kept, not copied.</summary>
    /// <param name="maps">One array per layer, each of that layer's <see cref="LayerShape.Size"/>.</param>
    public void Add(params float[][] maps)
    {
        ArgumentNullException.ThrowIfNull(maps);
        if (maps.Length != Layers.Count)
            throw new ArgumentException($"Expected {Layers.Count} layer maps, got {maps.Length}.", nameof(maps));
        for (int i = 0; i < maps.Length; i++)
            if (maps[i].Length != Layers[i].Size)
                throw new ArgumentException($"Layer {i} map has {maps[i].Length} values, expected {Layers[i].Size}.", nameof(maps));
        _images.Add(maps);
    }

    /// <inheritdoc />
    public void Read(int image, int layer, Span<float> destination) => _images[image][layer].CopyTo(destination);
}

/// <summary>Checks on feature values that the trainers share.</summary>
internal static class FeatureChecks
{
    /// <summary>Throws when one of an image's layer features is NaN or infinite; the message names image, layer and index.</summary>
    public static void EnsureFinite(ReadOnlySpan<float> values, int image, int layer)
    {
        int at = System.Numerics.Tensors.TensorPrimitives.IndexOfMaxMagnitude(values);
        if (at >= 0 && !float.IsFinite(values[at]))
            throw new ArgumentException($"Image {image}'s layer {layer} features hold a non-finite value ({values[at]}) at index {at}.", "features");
    }
}

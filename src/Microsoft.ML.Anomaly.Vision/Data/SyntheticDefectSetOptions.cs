namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Options of <see cref="SyntheticDefectSet.Generate"/>.</summary>
public sealed class SyntheticDefectSetOptions
{
    /// <summary>The seed: the same seed and options always give byte-identical images. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Width and height of every image in pixels, 32 to 2048. Default 256.</summary>
    public int ImageSize { get; set; } = 256;

    /// <summary>Defect-free training images per category (at least 1). Default 60.</summary>
    public int TrainCount { get; set; } = 60;

    /// <summary>Defect-free test images per category (0 or more). Default 20.</summary>
    public int TestGoodCount { get; set; } = 20;

    /// <summary>
    /// Defective test images per category (0 or more), shared out over <see cref="SyntheticDefectSet.DefectTypes"/> in
    /// that order, the first types taking one more when the count does not divide evenly. Default 20.
    /// </summary>
    public int TestDefectCount { get; set; } = 20;

    /// <summary>The categories to write, from <see cref="SyntheticDefectSet.CategoryNames"/>. Default: all of them.</summary>
    public IReadOnlyList<string> Categories { get; set; } = SyntheticDefectSet.CategoryNames;

    /// <summary>
    /// When a category folder already exists and is not empty: <see langword="true"/> deletes it first,
    /// <see langword="false"/> (the default) throws an <see cref="IOException"/>.
    /// </summary>
    public bool Overwrite { get; set; }
}

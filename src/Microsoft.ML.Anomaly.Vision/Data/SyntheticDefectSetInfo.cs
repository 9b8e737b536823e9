namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Whether a synthetic category is a repeating texture or a single object.</summary>
public enum SyntheticCategoryKind
{
    /// <summary>A repeating surface that fills the image, like fabric; defects can lie anywhere.</summary>
    Texture,

    /// <summary>One object on a background, like a part on a conveyor; defects lie on the object.</summary>
    Object,
}

/// <summary>What <see cref="SyntheticDefectSet.Generate"/> wrote.</summary>
public sealed class SyntheticDefectSetInfo
{
    internal SyntheticDefectSetInfo(string root, int seed, int imageSize, IReadOnlyList<SyntheticCategoryInfo> categories)
    {
        Root = root;
        Seed = seed;
        ImageSize = imageSize;
        Categories = categories;
    }

    /// <summary>The full path of the data set root; pass it to <c>LoadMvtecAd</c>.</summary>
    public string Root { get; }

    /// <summary>The seed the images were drawn with.</summary>
    public int Seed { get; }

    /// <summary>Width and height of every image in pixels.</summary>
    public int ImageSize { get; }

    /// <summary>One entry per category written, in the order requested.</summary>
    public IReadOnlyList<SyntheticCategoryInfo> Categories { get; }
}

/// <summary>The images written for one synthetic category.</summary>
public sealed class SyntheticCategoryInfo
{
    internal SyntheticCategoryInfo(string name, SyntheticCategoryKind kind, string path, int trainCount, int testGoodCount, IReadOnlyDictionary<string, int> defectCounts)
    {
        Name = name;
        Kind = kind;
        Path = path;
        TrainCount = trainCount;
        TestGoodCount = testGoodCount;
        DefectCounts = defectCounts;
        TestDefectCount = defectCounts.Values.Sum();
    }

    /// <summary>The category name (its folder name).</summary>
    public string Name { get; }

    /// <summary>Texture or object.</summary>
    public SyntheticCategoryKind Kind { get; }

    /// <summary>The full path of the category folder.</summary>
    public string Path { get; }

    /// <summary>Images in <c>train/good</c>.</summary>
    public int TrainCount { get; }

    /// <summary>Images in <c>test/good</c>.</summary>
    public int TestGoodCount { get; }

    /// <summary>Defective test images in all.</summary>
    public int TestDefectCount { get; }

    /// <summary>Defective test images per defect type (types with no image are left out).</summary>
    public IReadOnlyDictionary<string, int> DefectCounts { get; }
}

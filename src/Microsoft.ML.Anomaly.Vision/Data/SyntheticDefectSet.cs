using System.Globalization;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Writes a small synthetic industrial-inspection data set in the MVTec AD layout, with pixel-exact ground-truth
/// masks, for trying the detectors out and for tests without downloading a data set.
/// </summary>
/// <remarks>
/// <para>Categories: <c>"weave"</c> (a texture: plain-woven fabric with random thread phase, slight rotation and uneven
/// lighting) and <c>"washer"</c> (an object: a bevelled metal ring on a dark background, held in a fixture as on an
/// inspection line, so its position and size vary by well under a pixel while its lighting and finish vary slightly). Defect types, in both: <c>"scratch"</c> (a thin curved line, brighter or darker), <c>"hole"</c> (a dark spot),
/// <c>"color"</c> (a stain tinted towards a foreign colour) and <c>"missing"</c> (a patch of missing threads, or a bite out
/// of the ring's rim). Size and contrast are drawn per defect, so some are large and obvious and some small and faint.</para>
/// <para>Images are 8-bit RGB PNG, masks 8-bit greyscale PNG with 255 exactly on the pixels the defect changed and 0
/// elsewhere. The generator uses its own random generator and maths, so a seed gives the same pixels on every runtime.</para>
/// </remarks>
public static class SyntheticDefectSet
{
    /// <summary>The texture category: plain-woven fabric.</summary>
    public const string Weave = "weave";

    /// <summary>The object category: a metal washer.</summary>
    public const string Washer = "washer";

    /// <summary>A thin curved line, brighter or darker than the surface.</summary>
    public const string Scratch = "scratch";

    /// <summary>A round dark spot.</summary>
    public const string Hole = "hole";

    /// <summary>A stain tinted towards a foreign colour.</summary>
    public const string Color = "color";

    /// <summary>A piece of the surface missing (threads gone, or a bite out of the rim).</summary>
    public const string Missing = "missing";

    /// <summary>All category names, in the default order.</summary>
    public static IReadOnlyList<string> CategoryNames { get; } = Array.AsReadOnly(new[] { Weave, Washer });

    /// <summary>All defect types, in the order defective test images are shared out.</summary>
    public static IReadOnlyList<string> DefectTypes { get; } = Array.AsReadOnly(new[] { Scratch, Hole, Color, Missing });

    /// <summary>Writes the data set under <paramref name="root"/> (created if needed), one folder per category.</summary>
    /// <param name="root">The folder to write to.</param>
    /// <param name="options">Seed, image size, counts and categories; null uses the defaults.</param>
    /// <returns>The paths and counts written.</returns>
    /// <exception cref="ArgumentException"><paramref name="root"/> is empty, or an option is out of range (the message names it).</exception>
    /// <exception cref="IOException">A category folder exists and is not empty, and <see cref="SyntheticDefectSetOptions.Overwrite"/> is false.</exception>
    public static SyntheticDefectSetInfo Generate(string root, SyntheticDefectSetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (string.IsNullOrWhiteSpace(root))
        {
            throw new ArgumentException("The root folder must not be empty.", nameof(root));
        }

        options ??= new SyntheticDefectSetOptions();
        Validate(options);
        string fullRoot = Path.GetFullPath(root);
        Directory.CreateDirectory(fullRoot);

        var infos = new List<SyntheticCategoryInfo>();
        foreach (string category in options.Categories)
        {
            infos.Add(WriteCategory(fullRoot, category, options));
        }

        return new SyntheticDefectSetInfo(fullRoot, options.Seed, options.ImageSize, infos.AsReadOnly());
    }

    /// <summary>The number of defective test images of each type for a total of <paramref name="defectCount"/>.</summary>
    internal static int DefectCountOf(int typeIndex, int defectCount)
        => (defectCount / DefectTypes.Count) + (typeIndex < defectCount % DefectTypes.Count ? 1 : 0);

    /// <summary>The file name (without extension) of image number <paramref name="index"/> in a folder of <paramref name="count"/> images.</summary>
    internal static string FileStem(int index, int count)
    {
        int digits = Math.Max(3, (Math.Max(count, 1) - 1).ToString(CultureInfo.InvariantCulture).Length);
        return index.ToString("D" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    /// <summary>Renders image <paramref name="index"/> of a folder; with <paramref name="withDefect"/> false, the defect-free image its defect was painted on.</summary>
    internal static SyntheticSample RenderSample(SyntheticDefectSetOptions options, string category, MvtecSplit split, string defectType, int index, bool withDefect)
        => SyntheticRenderer.Render(category, options.Seed, options.ImageSize, split, defectType, index, withDefect);

    private static void Validate(SyntheticDefectSetOptions options)
    {
        if (options.ImageSize is < 32 or > 2048)
        {
            throw new ArgumentException($"ImageSize must be between 32 and 2048 pixels; it is {options.ImageSize}.", nameof(options));
        }

        if (options.TrainCount < 1)
        {
            throw new ArgumentException($"TrainCount must be at least 1; it is {options.TrainCount}.", nameof(options));
        }

        if (options.TestGoodCount < 0)
        {
            throw new ArgumentException($"TestGoodCount must not be negative; it is {options.TestGoodCount}.", nameof(options));
        }

        if (options.TestDefectCount < 0)
        {
            throw new ArgumentException($"TestDefectCount must not be negative; it is {options.TestDefectCount}.", nameof(options));
        }

        if (options.Categories is null || options.Categories.Count == 0)
        {
            throw new ArgumentException("Categories must name at least one category.", nameof(options));
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string category in options.Categories)
        {
            if (category is null || !CategoryNames.Contains(category))
            {
                throw new ArgumentException(
                    $"Unknown synthetic category '{category}'; the categories are: {string.Join(", ", CategoryNames)}.", nameof(options));
            }

            if (!seen.Add(category))
            {
                throw new ArgumentException($"The category '{category}' is listed twice in Categories.", nameof(options));
            }
        }
    }

    private static SyntheticCategoryInfo WriteCategory(string root, string category, SyntheticDefectSetOptions options)
    {
        string dir = Path.Combine(root, category);
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
        {
            if (!options.Overwrite)
            {
                throw new IOException(
                    $"The folder '{dir}' already exists and is not empty; delete it or set SyntheticDefectSetOptions.Overwrite to replace it.");
            }

            Directory.Delete(dir, recursive: true);
        }

        var jobs = new List<(MvtecSplit Split, string Type, int Index, string Image, string? Mask)>();
        string trainGood = Directory.CreateDirectory(Path.Combine(dir, "train", MvtecAd.GoodType)).FullName;
        for (int i = 0; i < options.TrainCount; i++)
        {
            jobs.Add((MvtecSplit.Train, MvtecAd.GoodType, i, Path.Combine(trainGood, FileStem(i, options.TrainCount) + ".png"), null));
        }

        if (options.TestGoodCount > 0)
        {
            string testGood = Directory.CreateDirectory(Path.Combine(dir, "test", MvtecAd.GoodType)).FullName;
            for (int i = 0; i < options.TestGoodCount; i++)
            {
                jobs.Add((MvtecSplit.Test, MvtecAd.GoodType, i, Path.Combine(testGood, FileStem(i, options.TestGoodCount) + ".png"), null));
            }
        }

        var defectCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int t = 0; t < DefectTypes.Count; t++)
        {
            string type = DefectTypes[t];
            int count = DefectCountOf(t, options.TestDefectCount);
            if (count == 0)
            {
                continue;
            }

            defectCounts[type] = count;
            string testDir = Directory.CreateDirectory(Path.Combine(dir, "test", type)).FullName;
            string maskDir = Directory.CreateDirectory(Path.Combine(dir, "ground_truth", type)).FullName;
            for (int i = 0; i < count; i++)
            {
                string stem = FileStem(i, count);
                jobs.Add((MvtecSplit.Test, type, i, Path.Combine(testDir, stem + ".png"), Path.Combine(maskDir, stem + "_mask.png")));
            }
        }

        int size = options.ImageSize;
        try
        {
            Parallel.For(0, jobs.Count, j =>
            {
                var job = jobs[j];
                SyntheticSample sample = SyntheticRenderer.Render(category, options.Seed, size, job.Split, job.Type, job.Index, withDefect: true);
                PngEncoder.Write(job.Image, sample.Rgb, size, size, 3);
                if (job.Mask is not null)
                {
                    PngEncoder.Write(job.Mask, sample.Mask!, size, size, 1);
                }
            });
        }
        catch (AggregateException ex) when (ex.InnerExceptions.Count == 1)
        {
            // Report the failure itself (such as a full disk), not the parallel loop's wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ex.InnerExceptions[0]);
        }

        SyntheticCategoryKind kind = category == Weave ? SyntheticCategoryKind.Texture : SyntheticCategoryKind.Object;
        return new SyntheticCategoryInfo(category, kind, Path.GetFullPath(dir), options.TrainCount, options.TestGoodCount, defectCounts.AsReadOnly());
    }
}

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Reads data sets laid out like MVTec AD:
/// <c>root/&lt;category&gt;/train/good/*.png</c> (defect-free training images),
/// <c>root/&lt;category&gt;/test/&lt;defect type&gt;/*.png</c> (test images; the type <c>good</c> holds the good ones) and
/// <c>root/&lt;category&gt;/ground_truth/&lt;defect type&gt;/&lt;name&gt;_mask.png</c> (one mask per defect image, white = defect).
/// </summary>
/// <remarks>
/// Image files may be PNG, JPEG, BMP, GIF or WebP (extensions compared case-insensitively); other files and
/// folders whose name starts with a dot are ignored. Rows come in ordinal order of defect type, then file name,
/// so the same folder always gives the same sequence.
/// </remarks>
public static class MvtecAd
{
    /// <summary>The defect type (folder name) of good images.</summary>
    public const string GoodType = "good";

    private static readonly string[] s_imageExtensions = { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp" };

    /// <summary>Lists the category folders under <paramref name="root"/>: the folders that hold a <c>train</c> or <c>test</c> folder, in ordinal order.</summary>
    /// <param name="root">The data set's root folder.</param>
    /// <returns>The category names.</returns>
    /// <exception cref="ArgumentException"><paramref name="root"/> is empty or does not exist.</exception>
    public static IReadOnlyList<string> ListCategories(string root)
    {
        CheckRoot(root);
        return FindCategories(root);
    }

    /// <summary>Reads the images of one category and split.</summary>
    /// <param name="root">The data set's root folder.</param>
    /// <param name="category">The category folder name, such as <c>"bottle"</c>.</param>
    /// <param name="split">Training or test images.</param>
    /// <returns>The images in a fixed order: for <see cref="MvtecSplit.Test"/> by defect type, then file name; for <see cref="MvtecSplit.Train"/> by file name.</returns>
    /// <exception cref="ArgumentException"><paramref name="root"/> is empty or does not exist, or <paramref name="category"/> is not a folder under it (the message lists the categories found).</exception>
    /// <exception cref="InvalidDataException">The category's folders do not follow the layout: <c>train/good</c> or <c>test</c> is missing or holds no image, or a defect image has no mask.</exception>
    public static IReadOnlyList<MvtecImage> ReadImages(string root, string category, MvtecSplit split)
    {
        CheckRoot(root);
        string categoryDir = ResolveCategory(root, category);
        return split switch
        {
            MvtecSplit.Train => ReadTrain(categoryDir),
            MvtecSplit.Test => ReadTest(categoryDir),
            _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split: use MvtecSplit.Train or MvtecSplit.Test."),
        };
    }

    internal static bool IsImageFile(string path)
    {
        string ext = Path.GetExtension(path);
        foreach (string e in s_imageExtensions)
        {
            if (string.Equals(ext, e, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private static void CheckRoot(string root)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (string.IsNullOrWhiteSpace(root))
        {
            throw new ArgumentException("The data set root folder must not be empty.", nameof(root));
        }

        if (!Directory.Exists(root))
        {
            throw new ArgumentException(
                $"The data set root folder '{Path.GetFullPath(root)}' does not exist.", nameof(root));
        }
    }

    private static List<string> FindCategories(string root)
    {
        var result = new List<string>();
        foreach (string dir in Directory.EnumerateDirectories(root))
        {
            string name = Path.GetFileName(dir);
            if (name.StartsWith('.'))
            {
                continue;
            }

            if (Directory.Exists(Path.Combine(dir, "train")) || Directory.Exists(Path.Combine(dir, "test")))
            {
                result.Add(name);
            }
        }

        result.Sort(StringComparer.Ordinal);
        return result;
    }

    private static string ResolveCategory(string root, string category)
    {
        ArgumentNullException.ThrowIfNull(category);
        if (string.IsNullOrWhiteSpace(category))
        {
            throw new ArgumentException("The category name must not be empty.", nameof(category));
        }

        if (category is "." or ".." || category.IndexOfAny(new[] { '/', '\\' }) >= 0 || Path.IsPathRooted(category))
        {
            throw new ArgumentException(
                $"The category '{category}' must be the name of one folder under the root, not a path.", nameof(category));
        }

        string dir = Path.GetFullPath(Path.Combine(root, category));
        if (!Directory.Exists(dir))
        {
            List<string> found = FindCategories(root);
            string list = found.Count == 0
                ? "none (no folder there holds a train or test folder)"
                : string.Join(", ", found);
            throw new ArgumentException(
                $"The category folder '{dir}' does not exist. Categories found in '{Path.GetFullPath(root)}': {list}.",
                nameof(category));
        }

        return dir;
    }

    private static List<string> ImageFiles(string dir)
    {
        var files = new List<string>();
        foreach (string file in Directory.EnumerateFiles(dir))
        {
            string name = Path.GetFileName(file);
            if (!name.StartsWith('.') && IsImageFile(name))
            {
                files.Add(file);
            }
        }

        files.Sort(StringComparer.Ordinal);
        return files;
    }

    private static string AcceptedExtensions => string.Join(", ", s_imageExtensions);

    private static List<MvtecImage> ReadTrain(string categoryDir)
    {
        string trainDir = Path.Combine(categoryDir, "train");
        string goodDir = Path.Combine(trainDir, GoodType);
        if (!Directory.Exists(goodDir))
        {
            string detail = Directory.Exists(trainDir)
                ? $"the folder '{trainDir}' exists but has no '{GoodType}' folder"
                : $"the folder '{trainDir}' does not exist";
            throw new InvalidDataException(
                $"The training images folder '{goodDir}' is missing: {detail}. " +
                "An MVTec AD category keeps its defect-free training images in <category>/train/good.");
        }

        List<string> files = ImageFiles(goodDir);
        if (files.Count == 0)
        {
            throw new InvalidDataException(
                $"The training images folder '{goodDir}' holds no image files (accepted extensions: {AcceptedExtensions}).");
        }

        var rows = new List<MvtecImage>(files.Count);
        foreach (string file in files)
        {
            rows.Add(new MvtecImage { ImagePath = file, Label = false, DefectType = GoodType, MaskPath = string.Empty });
        }

        return rows;
    }

    private static List<MvtecImage> ReadTest(string categoryDir)
    {
        string testDir = Path.Combine(categoryDir, "test");
        if (!Directory.Exists(testDir))
        {
            throw new InvalidDataException(
                $"The test images folder '{testDir}' does not exist. " +
                "An MVTec AD category keeps its test images in <category>/test/<defect type>, good ones in test/good.");
        }

        var typeDirs = new List<string>();
        foreach (string dir in Directory.EnumerateDirectories(testDir))
        {
            if (!Path.GetFileName(dir).StartsWith('.'))
            {
                typeDirs.Add(dir);
            }
        }

        typeDirs.Sort(StringComparer.Ordinal);
        var rows = new List<MvtecImage>();
        foreach (string typeDir in typeDirs)
        {
            string type = Path.GetFileName(typeDir);
            bool good = string.Equals(type, GoodType, StringComparison.OrdinalIgnoreCase);
            List<string> files = ImageFiles(typeDir);
            if (files.Count == 0)
            {
                continue;
            }

            Dictionary<string, string>? masks = good ? null : MasksOf(categoryDir, type);
            foreach (string file in files)
            {
                string mask = string.Empty;
                if (!good)
                {
                    string stem = Path.GetFileNameWithoutExtension(file);
                    if (!masks!.TryGetValue(stem + "_mask", out mask!))
                    {
                        string expected = Path.Combine(categoryDir, "ground_truth", type, stem + "_mask.png");
                        string folder = Path.Combine(categoryDir, "ground_truth", type);
                        string why = Directory.Exists(folder) ? string.Empty : $" (the folder '{folder}' does not exist)";
                        throw new InvalidDataException(
                            $"The defect image '{file}' has no ground-truth mask: expected '{expected}'{why}.");
                    }
                }

                rows.Add(new MvtecImage { ImagePath = file, Label = !good, DefectType = type, MaskPath = mask });
            }
        }

        if (rows.Count == 0)
        {
            throw new InvalidDataException(
                $"The test images folder '{testDir}' holds no images: expected <defect type> folders with image files " +
                $"(accepted extensions: {AcceptedExtensions}).");
        }

        return rows;
    }

    /// <summary>Maps each mask file name without extension to its path, preferring PNG when several extensions exist.</summary>
    private static Dictionary<string, string> MasksOf(string categoryDir, string type)
    {
        var masks = new Dictionary<string, string>(StringComparer.Ordinal);
        string folder = Path.Combine(categoryDir, "ground_truth", type);
        if (!Directory.Exists(folder))
        {
            return masks;
        }

        foreach (string file in ImageFiles(folder))
        {
            string stem = Path.GetFileNameWithoutExtension(file);
            bool png = string.Equals(Path.GetExtension(file), ".png", StringComparison.OrdinalIgnoreCase);
            if (!masks.ContainsKey(stem) || png)
            {
                masks[stem] = file;
            }
        }

        return masks;
    }
}

using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision.Sweeps;

/// <summary>
/// The images a sweep trains and validates on: the user's labelled validation set, or else a split of the training
/// images of which half the held-out ones get synthetic defects (written to a temporary folder, deleted on dispose).
/// </summary>
internal sealed class SweepValidationSet : IDisposable
{
    /// <summary>
    /// Start of the name of the synthetic split's temporary folder in <c>$TMPDIR</c> (<see cref="ProcessTempFolder"/>: a
    /// killed sweep's folder is deleted when the next sweep starts).
    /// </summary>
    public const string TemporaryFolderPrefix = "anomaly-vision-sweep-";

    private const string PathColumn = nameof(MvtecImage.ImagePath);

    private readonly string? _temporaryFolder;

    private SweepValidationSet(IDataView train, string trainColumn, IDataView validation, string validationColumn,
        bool[] labels, string[]? maskPaths, string?[] imagePaths, bool synthetic, string? temporaryFolder)
    {
        Train = train;
        TrainColumn = trainColumn;
        Validation = validation;
        ValidationColumn = validationColumn;
        Labels = labels;
        MaskPaths = maskPaths;
        ImagePaths = imagePaths;
        Synthetic = synthetic;
        _temporaryFolder = temporaryFolder;
    }

    /// <summary>The images the trials train on.</summary>
    public IDataView Train { get; }

    public string TrainColumn { get; }

    /// <summary>The validation images, in the order of <see cref="Labels"/>.</summary>
    public IDataView Validation { get; }

    public string ValidationColumn { get; }

    /// <summary>True for an anomalous validation image.</summary>
    public bool[] Labels { get; }

    /// <summary>Mask file per validation image ("" for a good one), or null when there are no masks (image metrics only).</summary>
    public string[]? MaskPaths { get; }

    /// <summary>File per validation image, or null entries when the images are not files (no overlays).</summary>
    public string?[] ImagePaths { get; }

    /// <summary>Whether the validation defects are synthetic.</summary>
    public bool Synthetic { get; }

    public int Count => Labels.Length;

    public static SweepValidationSet Create(IHostEnvironment env, IDataView train, IDataView? validation, ImageDetectorSweepOptions options, int seed)
    {
        var data = new DataOperationsCatalog(env);
        if (validation is not null)
            return FromLabelled(train, validation, options);

        string[] paths = ReadPaths(train, options.InputColumnName, nameof(train),
            "The synthetic validation split needs image file paths; give a text column of paths, or pass a labelled validation set.");
        if (paths.Length < 4)
            throw new ArgumentException($"The training data has {paths.Length} images; the synthetic validation split needs at least 4 (or pass a validation set).", nameof(train));
        int heldOut = Math.Clamp((int)Math.Round(paths.Length * (double)options.HoldOutFraction), 2, paths.Length - 2);
        int defective = heldOut / 2;

        // A seeded shuffle picks the held-out images; the training images keep their original order.
        var order = Enumerable.Range(0, paths.Length).ToArray();
        var random = new DeterministicRandom(DeterministicRandom.Combine(DeterministicRandom.HashString("sweep-holdout"), (ulong)(uint)seed));
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = random.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var held = order.Take(heldOut).ToArray();
        var trainRows = order.Skip(heldOut).Order().Select(i => new MvtecImage { ImagePath = paths[i], DefectType = "good" }).ToList();

        string folder = ProcessTempFolder.Create(TemporaryFolderPrefix);
        try
        {
            var rows = new List<MvtecImage>();
            for (int v = 0; v < heldOut; v++)
            {
                options.CancellationToken.ThrowIfCancellationRequested();
                string source = paths[held[v]];
                if (v >= heldOut - defective)
                {
                    byte[] rgb = Evaluation.ImagePixels.LoadRgb(source, options.MaxImagePixels, out int height, out int width);
                    int imageSeed = (int)DeterministicRandom.Combine((ulong)(uint)seed, (ulong)v);
                    SyntheticAnomaly anomaly = SyntheticAnomalyGenerator.Apply(rgb, height, width, imageSeed, options.SyntheticAnomalies);
                    string name = $"synthetic_{v:D3}_{Path.GetFileNameWithoutExtension(source)}";
                    string image = Path.Combine(folder, name + ".png"), mask = Path.Combine(folder, name + "_mask.png");
                    PngEncoder.Write(image, anomaly.Rgb, width, height, 3);
                    PngEncoder.Write(mask, anomaly.Mask, width, height, 1);
                    rows.Add(new MvtecImage { ImagePath = image, Label = true, DefectType = "synthetic", MaskPath = mask });
                }
                else
                {
                    rows.Add(new MvtecImage { ImagePath = source, DefectType = "good" });
                }
            }
            return new SweepValidationSet(data.LoadFromEnumerable(trainRows), PathColumn, data.LoadFromEnumerable(rows), PathColumn,
                rows.Select(r => r.Label).ToArray(), rows.Select(r => r.MaskPath).ToArray(), rows.Select(r => (string?)r.ImagePath).ToArray(),
                synthetic: true, folder);
        }
        catch
        {
            DeleteFolder(folder);
            throw;
        }
    }

    public void Dispose()
    {
        if (_temporaryFolder is not null)
            DeleteFolder(_temporaryFolder);
    }

    private static SweepValidationSet FromLabelled(IDataView train, IDataView validation, ImageDetectorSweepOptions options)
    {
        var schema = validation.Schema;
        var image = Internal.ImageColumnReader.Find(schema, options.InputColumnName, nameof(validation));
        var label = schema.GetColumnOrNull(options.LabelColumnName) ?? throw new ArgumentException(
            $"The validation data has no label column '{options.LabelColumnName}' (set {nameof(ImageDetectorSweepOptions.LabelColumnName)}).", nameof(validation));
        if (label.Type != BooleanDataViewType.Instance)
            throw new ArgumentException($"Label column '{label.Name}' must be Boolean but is {label.Type}.", nameof(validation));
        DataViewSchema.Column? mask = null;
        if (options.MaskPathColumnName is string maskName)
        {
            mask = schema.GetColumnOrNull(maskName) ?? throw new ArgumentException(
                $"The validation data has no mask path column '{maskName}'; set {nameof(ImageDetectorSweepOptions.MaskPathColumnName)} to null for image metrics only.",
                nameof(validation));
            if (mask.Value.Type is not TextDataViewType)
                throw new ArgumentException($"Mask path column '{maskName}' must be text but is {mask.Value.Type}.", nameof(validation));
        }

        var labels = new List<bool>();
        var masks = new List<string>();
        var paths = new List<string?>();
        bool isPath = image.Type is TextDataViewType;
        var columns = new List<DataViewSchema.Column> { label };
        if (mask is not null)
            columns.Add(mask.Value);
        if (isPath)
            columns.Add(image);
        using (var cursor = validation.GetRowCursor(columns))
        {
            var labelGetter = cursor.GetGetter<bool>(label);
            var maskGetter = mask is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(mask.Value);
            var pathGetter = isPath ? cursor.GetGetter<ReadOnlyMemory<char>>(image) : null;
            bool l = false;
            ReadOnlyMemory<char> text = default;
            while (cursor.MoveNext())
            {
                labelGetter(ref l);
                labels.Add(l);
                if (maskGetter is not null)
                {
                    maskGetter(ref text);
                    masks.Add(text.ToString().Trim());
                }
                if (pathGetter is not null)
                {
                    pathGetter(ref text);
                    paths.Add(text.ToString());
                }
                else
                {
                    paths.Add(null);
                }
            }
        }
        if (!labels.Contains(true) || !labels.Contains(false))
            throw new ArgumentException("The validation data needs both good and anomalous images.", nameof(validation));
        return new SweepValidationSet(train, options.InputColumnName, validation, options.InputColumnName,
            [.. labels], mask is null ? null : [.. masks], [.. paths], synthetic: false, temporaryFolder: null);
    }

    private static string[] ReadPaths(IDataView data, string column, string paramName, string notText)
    {
        var found = Internal.ImageColumnReader.Find(data.Schema, column, paramName);
        if (found.Type is not TextDataViewType)
            throw new ArgumentException($"Column '{column}' holds {found.Type}. {notText}", paramName);
        var paths = new List<string>();
        using var cursor = data.GetRowCursor([found]);
        var getter = cursor.GetGetter<ReadOnlyMemory<char>>(found);
        ReadOnlyMemory<char> text = default;
        while (cursor.MoveNext())
        {
            getter(ref text);
            paths.Add(text.ToString());
        }
        return [.. paths];
    }

    private static void DeleteFolder(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Evaluation;
using Microsoft.ML.Data;

namespace Microsoft.ML;

/// <summary>Evaluation of image anomaly detectors on the <see cref="AnomalyDetectionCatalog"/>.</summary>
public static class AnomalyVisionEvaluationCatalog
{
    /// <summary>
    /// Computes image AUROC and F1-max, and (when an anomaly map column and a mask path column are given)
    /// pixel AUROC, pixel F1-max and AUPRO, with anomalib's definitions (see <see cref="ImageAnomalyMetrics"/>).
    /// The data view is read once, row by row; pixel metrics are accumulated in fixed-size histograms, so
    /// memory does not grow with the number of images.
    /// </summary>
    /// <param name="catalog">The anomaly detection catalog.</param>
    /// <param name="scored">Scored data: one row per test image.</param>
    /// <param name="labelColumnName">Boolean ground truth column: true = anomalous image.</param>
    /// <param name="scoreColumnName">Single-precision image score column (higher = more anomalous).</param>
    /// <param name="anomalyMapColumnName">
    /// Known-size vector of Single holding the H×W anomaly map in row-major order, or null to skip pixel metrics.
    /// H and W come from the vector type's dimensions when it has two; otherwise the map must be square (H = W = √size).
    /// </param>
    /// <param name="maskPathColumnName">
    /// Text column with the path of each image's ground-truth mask (any format MLImage reads), or null to skip pixel
    /// metrics. An empty path means an all-good mask. Masks are resized by nearest neighbour to H×W; a pixel whose
    /// value is above 0 in any channel is anomalous. A mask must have the size of its image, and a row labelled good
    /// (false) must have no defect pixel in its mask: either is an error naming the row.
    /// </param>
    /// <param name="imagePathColumnName">
    /// Text column with each row's image path, whose header gives the image's size to check its mask against; when the
    /// scored data has no such column (or a row's path is empty), masks are not checked against their images' sizes.
    /// </param>
    /// <param name="maxImagePixels">
    /// Largest mask read, in pixels (see <see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>); a larger one is an error naming its file.
    /// </param>
    /// <returns>The metrics; pixel metrics are null when they were skipped.</returns>
    /// <exception cref="ArgumentException">
    /// A column is missing or has the wrong type (the message names it), only one class of images (or of pixels)
    /// is present, a score or map value is not finite, or a row's mask does not fit its image or its label.
    /// </exception>
    /// <exception cref="InvalidDataException">A mask file is not a complete image, not a regular file, or larger than <paramref name="maxImagePixels"/>.</exception>
    public static ImageAnomalyMetrics EvaluateImageAnomalies(this AnomalyDetectionCatalog catalog, IDataView scored,
        string labelColumnName = "Label", string scoreColumnName = "Score", string? anomalyMapColumnName = "AnomalyMap",
        string? maskPathColumnName = "MaskPath", string? imagePathColumnName = "ImagePath",
        long maxImagePixels = ImageAnomalyDetectorOptions.DefaultMaxImagePixels)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(scored);
        ArgumentException.ThrowIfNullOrEmpty(labelColumnName);
        ArgumentException.ThrowIfNullOrEmpty(scoreColumnName);
        ImageAnomalyDetectorOptions.ValidateMaxImagePixels(maxImagePixels, nameof(maxImagePixels), nameof(maxImagePixels));

        var schema = scored.Schema;
        var label = FindColumn(schema, labelColumnName, nameof(labelColumnName));
        if (label.Type != BooleanDataViewType.Instance)
            throw new ArgumentException($"Label column '{labelColumnName}' must be Boolean but is {label.Type}.", nameof(labelColumnName));
        var score = FindColumn(schema, scoreColumnName, nameof(scoreColumnName));
        if (score.Type != NumberDataViewType.Single)
            throw new ArgumentException($"Score column '{scoreColumnName}' must be Single but is {score.Type}.", nameof(scoreColumnName));

        bool pixels = !string.IsNullOrEmpty(anomalyMapColumnName) && !string.IsNullOrEmpty(maskPathColumnName);
        DataViewSchema.Column? map = null, mask = null, image = null;
        int height = 0, width = 0;
        if (pixels)
        {
            map = FindColumn(schema, anomalyMapColumnName!, nameof(anomalyMapColumnName));
            (height, width) = MapSize(map.Value, anomalyMapColumnName!);
            mask = FindColumn(schema, maskPathColumnName!, nameof(maskPathColumnName));
            if (mask.Value.Type is not TextDataViewType)
                throw new ArgumentException($"Mask path column '{maskPathColumnName}' must be text but is {mask.Value.Type}.", nameof(maskPathColumnName));
            image = string.IsNullOrEmpty(imagePathColumnName) ? null : schema.GetColumnOrNull(imagePathColumnName);
            if (image is { Type: not TextDataViewType })
                throw new ArgumentException($"Image path column '{imagePathColumnName}' must be text but is {image.Value.Type}.", nameof(imagePathColumnName));
        }

        var scores = new List<float>();
        var labels = new List<bool>();
        var histogram = pixels ? new PixelScoreHistogram() : null;
        var columns = new List<DataViewSchema.Column> { label, score };
        if (pixels)
        {
            columns.Add(map!.Value);
            columns.Add(mask!.Value);
            if (image is not null)
                columns.Add(image.Value);
        }
        using (var cursor = scored.GetRowCursor(columns))
        {
            var labelGetter = cursor.GetGetter<bool>(label);
            var scoreGetter = cursor.GetGetter<float>(score);
            var mapGetter = pixels ? cursor.GetGetter<VBuffer<float>>(map!.Value) : null;
            var maskGetter = pixels ? cursor.GetGetter<ReadOnlyMemory<char>>(mask!.Value) : null;
            var imageGetter = image is not null ? cursor.GetGetter<ReadOnlyMemory<char>>(image.Value) : null;
            bool l = false;
            float s = 0;
            VBuffer<float> mapBuffer = default;
            ReadOnlyMemory<char> maskPath = default, imagePath = default;
            var dense = pixels ? new float[height * width] : [];
            long row = 0;
            while (cursor.MoveNext())
            {
                labelGetter(ref l);
                scoreGetter(ref s);
                if (!float.IsFinite(s))
                    throw new ArgumentException($"Score column '{scoreColumnName}' holds a non-finite value ({s}) in row {row}.", nameof(scored));
                scores.Add(s);
                labels.Add(l);
                if (pixels)
                {
                    mapGetter!(ref mapBuffer);
                    if (mapBuffer.Length != dense.Length)
                        throw new ArgumentException($"Anomaly map column '{anomalyMapColumnName}' has {mapBuffer.Length} values in row {row}, expected {dense.Length}.", nameof(scored));
                    mapBuffer.CopyTo(dense);
                    maskGetter!(ref maskPath);
                    string path = maskPath.ToString().Trim();
                    imageGetter?.Invoke(ref imagePath);
                    bool[] maskPixels = path.Length == 0 ? [] : ImagePixels.LoadRowMask(path, height, width, maxImagePixels, l,
                        imageGetter is null ? null : imagePath.ToString().Trim(), $"Mask path column '{maskPathColumnName}', row {row}");
                    try
                    {
                        histogram!.Add(dense, maskPixels, height, width);
                    }
                    catch (ArgumentException e)
                    {
                        throw new ArgumentException($"Anomaly map column '{anomalyMapColumnName}', row {row}: {e.Message}", nameof(scored), e);
                    }
                }
                row++;
            }
        }

        return ComputeMetrics(scores.ToArray(), labels.ToArray(), histogram, scoreColumnName, labelColumnName);
    }

    /// <summary>The metrics of image scores and labels, with pixel metrics when a histogram of maps against masks is given.</summary>
    internal static ImageAnomalyMetrics ComputeMetrics(float[] scores, bool[] labels, PixelScoreHistogram? histogram,
        string scoresName = "scores", string labelsName = "labels")
    {
        var bins = ExactScoreBins.Create(scores, labels, scoresName, labelsName);
        double auroc = AnomalyMetricMath.Auroc(bins.Negatives, bins.Positives, "image");
        var (f1, bin) = AnomalyMetricMath.F1Max(bins.Negatives, bins.Positives, "image");
        long good = 0, bad = 0;
        foreach (bool b in labels)
        {
            if (b) bad++; else good++;
        }
        double? pixelAuroc = null, pixelF1 = null, pixelThreshold = null, aupro = null;
        if (histogram is not null)
        {
            pixelAuroc = histogram.Auroc();
            var (pf1, threshold) = histogram.F1Max();
            pixelF1 = pf1;
            pixelThreshold = threshold;
            aupro = histogram.Aupro();
        }
        return new ImageAnomalyMetrics
        {
            ImageAuroc = auroc,
            ImageF1Max = f1,
            ImageF1Threshold = bins.Values[bin],
            PixelAuroc = pixelAuroc,
            PixelF1Max = pixelF1,
            PixelF1Threshold = pixelThreshold,
            Aupro = aupro,
            GoodImages = good,
            AnomalousImages = bad,
        };
    }

    private static DataViewSchema.Column FindColumn(DataViewSchema schema, string name, string parameter) =>
        schema.GetColumnOrNull(name) ?? throw new ArgumentException(
            $"Column '{name}' was not found in the scored data (columns: {string.Join(", ", schema.Select(c => c.Name))}).", parameter);

    private static (int Height, int Width) MapSize(DataViewSchema.Column column, string name)
    {
        if (column.Type is not VectorDataViewType vector || vector.ItemType != NumberDataViewType.Single || !vector.IsKnownSize)
            throw new ArgumentException($"Anomaly map column '{name}' must be a known-size vector of Single but is {column.Type}.", "anomalyMapColumnName");
        if (vector.Dimensions.Length == 2)
            return (vector.Dimensions[0], vector.Dimensions[1]);
        int size = vector.Size;
        int side = (int)Math.Round(Math.Sqrt(size));
        if (side * side != size)
            throw new ArgumentException(
                $"Anomaly map column '{name}' has {size} values and no two-dimensional shape; a square map is assumed but {size} is not a square.", "anomalyMapColumnName");
        return (side, side);
    }
}

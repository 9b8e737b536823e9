namespace Microsoft.ML.Anomaly.Vision.Internal;

/// <summary>
/// Reads the training images of an <see cref="IDataView"/> in batches of normalized CHW tensors.
/// </summary>
internal static class TrainingImageReader
{
    /// <summary>
    /// Reads every row's image from <paramref name="column"/> (MLImage or text path), resized to
    /// <paramref name="height"/> × <paramref name="width"/> and normalized (<see cref="ImageTensorConverter"/>).
    /// </summary>
    /// <param name="data">The training data.</param>
    /// <param name="column">Name of the image column.</param>
    /// <param name="height">Image height the detector takes.</param>
    /// <param name="width">Image width the detector takes.</param>
    /// <param name="batchSize">Images per batch (positive).</param>
    /// <param name="maxImagePixels">Largest image accepted, width × height (<see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>).</param>
    /// <param name="cancellationToken">Checked before each image is read.</param>
    /// <returns>
    /// Batches in data order; each array is new and holds exactly <c>count</c> × 3 × height × width floats
    /// (the last batch may be smaller than <paramref name="batchSize"/>).
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException">The column is missing or has the wrong type (thrown at the call).</exception>
    /// <exception cref="ArgumentException">The data has no rows (thrown when enumerated).</exception>
    /// <exception cref="InvalidDataException">A row has no image, an image above the size limit or an unreadable image file (names the row and path).</exception>
    public static IEnumerable<(float[] Images, int Count)> ReadBatches(IDataView data, string column, int height, int width, int batchSize,
        long maxImagePixels, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentException.ThrowIfNullOrEmpty(column);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        DataViewSchema.Column imageColumn = ImageColumnReader.Find(data.Schema, column, nameof(data));
        return Read(data, imageColumn, height, width, batchSize, maxImagePixels, cancellationToken);
    }

    private static IEnumerable<(float[] Images, int Count)> Read(IDataView data, DataViewSchema.Column column, int height, int width, int batchSize,
        long maxImagePixels, CancellationToken cancellationToken)
    {
        int imageSize = 3 * height * width;
        using DataViewRowCursor cursor = data.GetRowCursor([column]);
        var reader = new ImageColumnReader(cursor, column, maxImagePixels);
        float[] batch = new float[batchSize * imageSize];
        int count = 0;
        long total = 0;
        // Paths are read in row order; their files are decoded in parallel, a batch at a time.
        var loads = new List<Action>();
        while (cursor.MoveNext())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (reader.ReadDeferred(batch, count * imageSize, height, width) is Action load)
                loads.Add(load);
            count++;
            total++;
            if (count == batchSize)
            {
                ImageColumnReader.RunInParallel(loads);
                loads.Clear();
                yield return (batch, count);
                batch = new float[batchSize * imageSize];
                count = 0;
            }
        }

        if (total == 0)
            throw new ArgumentException($"The training data has no rows: at least one image in column '{column.Name}' is needed.", nameof(data));
        ImageColumnReader.RunInParallel(loads);
        if (count > 0)
            yield return (batch.AsSpan(0, count * imageSize).ToArray(), count);
    }
}

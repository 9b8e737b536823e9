using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Anomaly.Vision.Internal;

/// <summary>
/// Reads the image of the current row of a cursor from either an image column (<see cref="MLImage"/>) or a
/// text column holding a file path, and writes it as a normalized CHW tensor.
/// </summary>
internal sealed class ImageColumnReader
{
    private readonly DataViewRow _row;
    private readonly string _columnName;
    private readonly ValueGetter<MLImage>? _imageGetter;
    private readonly ValueGetter<ReadOnlyMemory<char>>? _pathGetter;
    private readonly long _maxPixels;
    private MLImage _image = null!;
    private ReadOnlyMemory<char> _path;
    private string _lastPath = "";

    /// <summary>Creates a reader of <paramref name="column"/> on <paramref name="row"/> (the column must be active).</summary>
    /// <param name="row">The row or cursor.</param>
    /// <param name="column">The image column: MLImage or text path.</param>
    /// <param name="maxPixels">Largest image accepted, width × height (<see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>).</param>
    public ImageColumnReader(DataViewRow row, DataViewSchema.Column column, long maxPixels)
    {
        _row = row;
        _columnName = column.Name;
        _maxPixels = maxPixels;
        if (column.Type is ImageDataViewType)
            _imageGetter = row.GetGetter<MLImage>(column);
        else if (column.Type is TextDataViewType)
            _pathGetter = row.GetGetter<ReadOnlyMemory<char>>(column);
        else
            throw SchemaMismatch(column.Name, column.Type, nameof(column));
    }

    /// <summary>True when the column's values are file paths rather than decoded images.</summary>
    public bool ReadsPaths => _pathGetter is not null;

    /// <summary>
    /// Reads the current row's image, resizes it to <paramref name="height"/> × <paramref name="width"/> and
    /// writes 3 × height × width normalized floats to <paramref name="destination"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// The row has no image, its image is larger than the limit, or its file is missing or unreadable (the message names the row and path).
    /// </exception>
    public void Read(Span<float> destination, int height, int width)
    {
        if (_imageGetter is not null)
        {
            _imageGetter(ref _image);
            if (_image is null)
                throw new InvalidDataException($"Row {_row.Position} of column '{_columnName}' holds no image.");
            ImageTensorConverter.CheckImageSize($"The image in row {_row.Position} of column '{_columnName}'", _image.Width, _image.Height, _maxPixels);
            ImageTensorConverter.ToNormalizedChw(_image, height, width, destination);
            return;
        }

        ReadPath(height, width)(destination);
    }

    /// <summary>
    /// Like <see cref="Read"/>, but a file path is only read now: the file is decoded, resized and normalized into
    /// <paramref name="destination"/> at <paramref name="offset"/> by the returned action, which may run on another
    /// thread (an image column's image is converted now, and null is returned).
    /// </summary>
    /// <exception cref="InvalidDataException">The row has no image or an empty path; the action throws it for a missing or unreadable file.</exception>
    public Action? ReadDeferred(float[] destination, int offset, int height, int width)
    {
        int length = 3 * height * width;
        if (_imageGetter is not null)
        {
            Read(destination.AsSpan(offset, length), height, width);
            return null;
        }
        var load = ReadPath(height, width);
        return () => load(destination.AsSpan(offset, length));
    }

    /// <summary>Reads the current row's path; the returned loader decodes it into a destination of 3 × height × width floats.</summary>
    private SpanLoader ReadPath(int height, int width)
    {
        _pathGetter!(ref _path);
        string path = _lastPath = _path.ToString();
        long position = _row.Position;
        string columnName = _columnName;
        long maxPixels = _maxPixels;
        if (path.Length == 0)
            throw new InvalidDataException($"Row {position} of column '{columnName}' holds an empty image path.");
        return destination => Load(path, position, columnName, height, width, destination, maxPixels);
    }

    /// <summary>What identifies the image the last <see cref="Read"/> or <see cref="ReadDeferred"/> read: its path, or its size and a hash of its pixels.</summary>
    public ImageIdentity LastIdentity() => _imageGetter is null ? new(_lastPath, 0, 0, 0) : ImageIdentity.Of(_image);

    /// <summary>Reads the current row's value and returns what identifies it (see <see cref="LastIdentity"/>), converting nothing.</summary>
    public ImageIdentity ReadIdentity()
    {
        if (_imageGetter is not null)
            _imageGetter(ref _image);
        else
        {
            _pathGetter!(ref _path);
            _lastPath = _path.ToString();
        }
        return LastIdentity();
    }

    private delegate void SpanLoader(Span<float> destination);

    /// <summary>Runs the actions of <see cref="ReadDeferred"/> on the thread pool; a failure is rethrown as is, the first row's when several fail.</summary>
    public static void RunInParallel(IReadOnlyList<Action> loads)
    {
        var errors = new Exception?[loads.Count];
        Parallel.For(0, loads.Count, i =>
        {
            try
            {
                loads[i]();
            }
            catch (Exception ex)
            {
                errors[i] = ex;
            }
        });
        if (errors.FirstOrDefault(e => e is not null) is Exception first)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }

    private static void Load(string path, long position, string columnName, int height, int width, Span<float> destination, long maxPixels)
    {
        try
        {
            ImageTensorConverter.LoadNormalizedChw(path, height, width, destination, maxPixels);
        }
        catch (Exception ex) when (ex is FileNotFoundException or InvalidDataException)
        {
            throw new InvalidDataException($"Row {position} of column '{columnName}': {ex.Message}", ex);
        }
    }

    /// <summary>True when a column of <paramref name="type"/> can feed a detector (image or text path).</summary>
    public static bool IsSupported(DataViewType type) => type is ImageDataViewType or TextDataViewType;

    /// <summary>
    /// Finds the image column <paramref name="name"/> in <paramref name="schema"/>, or throws an
    /// <see cref="ArgumentOutOfRangeException"/> naming the column (and its type, when it has the wrong one).
    /// </summary>
    public static DataViewSchema.Column Find(DataViewSchema schema, string name, string paramName)
    {
        DataViewSchema.Column? column = schema.GetColumnOrNull(name);
        if (column is null)
            throw new ArgumentOutOfRangeException(paramName, $"Input column '{name}' was not found in the data.");
        if (!IsSupported(column.Value.Type))
            throw SchemaMismatch(name, column.Value.Type, paramName);
        return column.Value;
    }

    /// <summary>The error for an image column of the wrong type.</summary>
    public static ArgumentOutOfRangeException SchemaMismatch(string name, DataViewType type, string paramName) =>
        new(paramName, $"Input column '{name}' has type {type}, but an image column (MLImage, e.g. from LoadImages) or a text column of image file paths is required.");
}

/// <summary>What tells two reads of an image column apart: the path for a path column, else the image's size and a hash of its pixels.</summary>
internal readonly record struct ImageIdentity(string? Path, int Width, int Height, int PixelHash)
{
    /// <summary>The identity of <paramref name="image"/> (none for a missing image).</summary>
    public static ImageIdentity Of(MLImage? image)
    {
        if (image is null)
            return default;
        var hash = new HashCode();
        hash.AddBytes(image.Pixels);
        return new(null, image.Width, image.Height, hash.ToHashCode());
    }

    /// <inheritdoc />
    public override string ToString() => Path is not null ? $"'{Path}'" : $"a {Width}×{Height} image (pixel hash {PixelHash:X8})";
}

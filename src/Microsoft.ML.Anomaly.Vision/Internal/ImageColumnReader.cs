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
    private MLImage _image = null!;
    private ReadOnlyMemory<char> _path;

    /// <summary>Creates a reader of <paramref name="column"/> on <paramref name="row"/> (the column must be active).</summary>
    public ImageColumnReader(DataViewRow row, DataViewSchema.Column column)
    {
        _row = row;
        _columnName = column.Name;
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
    /// <exception cref="InvalidDataException">The row has no image, or its file is missing or unreadable (the message names the row and path).</exception>
    public void Read(Span<float> destination, int height, int width)
    {
        if (_imageGetter is not null)
        {
            _imageGetter(ref _image);
            if (_image is null)
                throw new InvalidDataException($"Row {_row.Position} of column '{_columnName}' holds no image.");
            ImageTensorConverter.ToNormalizedChw(_image, height, width, destination);
            return;
        }

        _pathGetter!(ref _path);
        string path = _path.ToString();
        if (path.Length == 0)
            throw new InvalidDataException($"Row {_row.Position} of column '{_columnName}' holds an empty image path.");
        MLImage image;
        try
        {
            image = ImageTensorConverter.LoadImage(path);
        }
        catch (Exception ex) when (ex is FileNotFoundException or InvalidDataException)
        {
            throw new InvalidDataException($"Row {_row.Position} of column '{_columnName}': {ex.Message}", ex);
        }
        using (image)
            ImageTensorConverter.ToNormalizedChw(image, height, width, destination);
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

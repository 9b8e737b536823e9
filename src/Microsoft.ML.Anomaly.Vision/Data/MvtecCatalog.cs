using Microsoft.ML.Anomaly.Vision;

namespace Microsoft.ML;

/// <summary>Loads MVTec AD style image folders as ML.NET data views.</summary>
public static class MvtecCatalog
{
    /// <summary>
    /// Loads one category and split of an MVTec AD style data set (see <see cref="MvtecAd"/> for the layout) as a data view
    /// with the columns <c>ImagePath</c> (text), <c>Label</c> (boolean, <see langword="true"/> = anomalous),
    /// <c>DefectType</c> (text, <c>"good"</c> for good images) and <c>MaskPath</c> (text, empty for good images).
    /// </summary>
    /// <param name="data">The data operations catalog.</param>
    /// <param name="root">The data set's root folder, which holds one folder per category.</param>
    /// <param name="category">The category folder name, such as <c>"bottle"</c>.</param>
    /// <param name="split">Training or test images.</param>
    /// <returns>The images in a fixed order (by defect type, then file name).</returns>
    /// <exception cref="ArgumentException"><paramref name="root"/> is empty or does not exist, or <paramref name="category"/> is not a folder under it (the message lists the categories found).</exception>
    /// <exception cref="InvalidDataException">The category's folders do not follow the layout: <c>train/good</c> or <c>test</c> is missing or holds no image, or a defect image has no mask.</exception>
    public static IDataView LoadMvtecAd(this DataOperationsCatalog data, string root, string category, MvtecSplit split)
    {
        ArgumentNullException.ThrowIfNull(data);
        IReadOnlyList<MvtecImage> rows = MvtecAd.ReadImages(root, category, split);
        return data.LoadFromEnumerable(rows);
    }
}

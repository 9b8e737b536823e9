using System.Collections;
using Microsoft.ML.Anomaly.Vision.Tests.Persistence;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Scoring;

/// <summary>
/// Transform scores a batch of rows read ahead by a second cursor; a source that gives its cursors its rows in
/// different orders must be refused, not scored with other rows' images.
/// </summary>
[TestClass]
public sealed class RowAlignmentTests
{
    /// <summary>The rows, rotated by one more place at every enumeration (as a source backed by an unordered query would).</summary>
    private sealed class ReorderingRows(ImagePathRow[] rows) : IEnumerable<ImagePathRow>
    {
        private int _enumerations;

        public IEnumerator<ImagePathRow> GetEnumerator()
        {
            int shift = Interlocked.Increment(ref _enumerations);
            for (int i = 0; i < rows.Length; i++)
                yield return rows[(i + shift) % rows.Length];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static ImagePathRow[] GreyImages(int count)
    {
        string folder = TestImages.NewDirectory();
        return Enumerable.Range(0, count)
            .Select(i => new ImagePathRow { ImagePath = TestImages.WriteUniformPng(folder, $"{i}.png", 4, 4, (byte)(30 * i), (byte)(30 * i), (byte)(30 * i)) })
            .ToArray();
    }

    [TestMethod]
    public void PathsInAnotherOrderForTheSecondCursorAreRefusedNamingTheRow()
    {
        var ml = new MLContext(0);
        var toy = new ToyTransformer(ml, new ToyOptions { InputColumnName = "ImagePath", ScoringBatchSize = 4 }, mean: 0f);
        IDataView reordering = ml.Data.LoadFromEnumerable(new ReorderingRows(GreyImages(6)));
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => toy.Transform(reordering).GetColumn<float>("Score").ToArray());
        StringAssert.Contains(error.Message, "row 0");
        StringAssert.Contains(error.Message, "same order");
    }

    [TestMethod]
    public void ImagesInAnotherOrderForTheSecondCursorAreRefusedNamingTheRow()
    {
        var ml = new MLContext(0);
        var toy = new ToyTransformer(ml, new ToyOptions { InputColumnName = "Image", ScoringBatchSize = 4 }, mean: 0f);
        IDataView reordering = ml.Data.LoadFromEnumerable(new ReorderingRows(GreyImages(6)));
        IDataView images = ml.Transforms.LoadImages("Image", null, "ImagePath").Fit(reordering).Transform(reordering);
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => toy.Transform(images).GetColumn<float>("Score").ToArray());
        StringAssert.Contains(error.Message, "row 0");
    }

    [TestMethod]
    public void RowsInTheSameOrderGetTheirOwnImagesScores()
    {
        var ml = new MLContext(0);
        var toy = new ToyTransformer(ml, new ToyOptions { InputColumnName = "ImagePath", ScoringBatchSize = 4 }, mean: 0f);
        ImagePathRow[] rows = GreyImages(6);
        IDataView data = ml.Data.LoadFromEnumerable(rows);
        float[] batched = toy.Transform(data).GetColumn<float>("Score").ToArray();
        IDataView images = ml.Transforms.LoadImages("Image", null, "ImagePath").Fit(data).Transform(data);
        var fromImages = new ToyTransformer(ml, new ToyOptions { InputColumnName = "Image", ScoringBatchSize = 4 }, mean: 0f);
        float[] batchedImages = fromImages.Transform(images).GetColumn<float>("Score").ToArray();
        for (int i = 0; i < rows.Length; i++)
        {
            // A uniform grey g scores the mean over channels of |N(g, c)|.
            float expected = Enumerable.Range(0, 3).Select(c => MathF.Abs(TestImages.Normalize((byte)(30 * i), c))).Sum() / 3f;
            Assert.AreEqual(expected, batched[i], 1e-5f, $"row {i}, paths");
            Assert.AreEqual(expected, batchedImages[i], 1e-5f, $"row {i}, images");
        }
    }
}

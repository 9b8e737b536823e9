using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using Microsoft.ML.Anomaly.Vision.Tests.Persistence;

namespace Microsoft.ML.Anomaly.Vision.Tests.Internal;

/// <summary>
/// The library compiles against publicized copies of ML.NET's core assemblies. These tests bind every
/// reference it makes into those assemblies against the assemblies loaded at run time, so an ML.NET
/// version whose internals differ fails here, loudly, instead of at a user's first model load.
/// </summary>
[TestClass]
public sealed class MlNetInternalsTests
{
    private static readonly string[] MlNetAssemblies = ["Microsoft.ML.Core", "Microsoft.ML.Data", "Microsoft.ML.DataView", "Microsoft.ML.OnnxConverter"];

    [TestMethod]
    [DataRow("Microsoft.ML.Anomaly.Vision", "Microsoft.ML.ModelSaveContext.SetVersionInfo", "Microsoft.ML.ModelLoadContext.CheckAtModel")]
    [DataRow("Microsoft.ML.Anomaly.Vision.Tests", "Microsoft.ML.VersionInfo..ctor", "Microsoft.ML.LoadableClassAttribute..ctor")]
    public void EveryMlNetMemberReference_BindsAtRunTime(string assemblyName, string usedInternal1, string usedInternal2)
    {
        Assembly assembly = assemblyName == "Microsoft.ML.Anomaly.Vision" ? typeof(ImageAnomalyTransformerBase).Assembly : typeof(ToyTransformer).Assembly;
        Module module = assembly.ManifestModule;
        using var pe = new PEReader(File.OpenRead(assembly.Location));
        MetadataReader md = pe.GetMetadataReader();

        var checkedMembers = new List<string>();
        var failures = new List<string>();
        foreach (MemberReferenceHandle handle in md.MemberReferences)
        {
            MemberReference member = md.GetMemberReference(handle);
            string? owner = OwnerAssembly(md, member.Parent, out string typeName);
            if (owner is null || !MlNetAssemblies.Contains(owner))
                continue;
            string name = $"{typeName}.{md.GetString(member.Name)}";
            try
            {
                module.ResolveMember(MetadataTokens.GetToken(handle));
                checkedMembers.Add(name);
            }
            catch (ArgumentException)
            {
                // A member of a generic instantiation over type parameters: check by name on the definition.
                Type? type = Type.GetType($"{typeName}, {owner}");
                if (type is null || type.GetMember(md.GetString(member.Name), BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static).Length == 0)
                    failures.Add($"{name} (by name)");
                else
                    checkedMembers.Add(name);
            }
            catch (Exception ex) when (ex is MissingMemberException or TypeLoadException or BadImageFormatException)
            {
                failures.Add($"{name}: {ex.Message}");
            }
        }

        Assert.IsEmpty(failures, "ML.NET members used by " + assemblyName + " are missing at run time:\n" + string.Join("\n", failures));
        CollectionAssert.Contains(checkedMembers, usedInternal1);
        CollectionAssert.Contains(checkedMembers, usedInternal2);
    }

    [TestMethod]
    public void PersistenceApi_IsStillWhereTheLibraryExpectsIt()
    {
        Assembly core = typeof(ModelSaveContext).Assembly;
        Assert.AreEqual("Microsoft.ML.Core", core.GetName().Name);
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
        Assert.IsNotNull(typeof(ModelSaveContext).GetMethod("SaveBinaryStream", all), "ModelSaveContext.SaveBinaryStream");
        Assert.IsNotNull(typeof(ModelLoadContext).GetMethod("TryLoadBinaryStream", all), "ModelLoadContext.TryLoadBinaryStream");
        Assert.IsNotNull(typeof(VersionInfo).GetConstructor(all, [typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string)]), "VersionInfo(signature, 3 versions, loader assembly, loader signature, alt)");
        Assert.IsNotNull(typeof(Microsoft.ML.Data.RowToRowTransformerBase).GetMethod("MakeRowMapper", all), "RowToRowTransformerBase.MakeRowMapper");
        // The runtime honours IgnoresAccessChecksToAttribute for the library.
        string[] ignored = typeof(ImageAnomalyTransformerBase).Assembly.GetCustomAttributes()
            .Where(a => a.GetType().FullName == "System.Runtime.CompilerServices.IgnoresAccessChecksToAttribute")
            .Select(a => (string)a.GetType().GetProperty("AssemblyName")!.GetValue(a)!).Order().ToArray();
        CollectionAssert.AreEqual(MlNetAssemblies, ignored);
    }

    private static string? OwnerAssembly(MetadataReader md, EntityHandle parent, out string typeName)
    {
        typeName = "";
        switch (parent.Kind)
        {
            case HandleKind.TypeReference:
                return TypeRefAssembly(md, (TypeReferenceHandle)parent, out typeName);
            case HandleKind.TypeSpecification:
                BlobReader blob = md.GetBlobReader(md.GetTypeSpecification((TypeSpecificationHandle)parent).Signature);
                if (blob.ReadSignatureTypeCode() != SignatureTypeCode.GenericTypeInstance)
                    return null;
                blob.ReadSignatureTypeCode(); // class or value type
                EntityHandle generic = blob.ReadTypeHandle();
                return generic.Kind == HandleKind.TypeReference ? TypeRefAssembly(md, (TypeReferenceHandle)generic, out typeName) : null;
            default:
                return null;
        }
    }

    private static string? TypeRefAssembly(MetadataReader md, TypeReferenceHandle handle, out string typeName)
    {
        TypeReference type = md.GetTypeReference(handle);
        string name = md.GetString(type.Name);
        if (type.ResolutionScope.Kind == HandleKind.TypeReference)
        {
            string? outer = TypeRefAssembly(md, (TypeReferenceHandle)type.ResolutionScope, out string outerName);
            typeName = $"{outerName}+{name}";
            return outer;
        }
        string ns = md.GetString(type.Namespace);
        typeName = ns.Length == 0 ? name : $"{ns}.{name}";
        return type.ResolutionScope.Kind == HandleKind.AssemblyReference
            ? md.GetString(md.GetAssemblyReference((AssemblyReferenceHandle)type.ResolutionScope).Name)
            : null;
    }
}

namespace Bastion.Tests.Infrastructure;

/// <summary>The repository's root (examples/, docs/, artifacts/, corpora), found from the test binaries' folder: the one lookup.</summary>
public static class Repo
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bastion.slnx"))) dir = dir.Parent;
            return dir?.FullName ?? Directory.GetCurrentDirectory();
        }
    }

    public static string Artifacts
    {
        get
        {
            var d = Path.Combine(Root, "artifacts");
            Directory.CreateDirectory(d);
            return d;
        }
    }
}

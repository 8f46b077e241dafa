using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Unit;

/// <summary>Writes a configuration (and its side files) into a scratch folder and builds it as `check` does.</summary>
public sealed class ConfigFixture
{
    public string Dir { get; } = Scratch.NewDir("cfg");
    public string Path => System.IO.Path.Combine(Dir, "bastion.yaml");

    public ConfigFixture File(string name, string content)
    {
        System.IO.File.WriteAllText(System.IO.Path.Combine(Dir, name), content);
        return this;
    }

    public (Runtime? Runtime, List<ConfigError> Errors) Build(string yaml)
    {
        System.IO.File.WriteAllText(Path, yaml);
        return Runtime.Build(yaml, Path);
    }

    /// <summary>Builds and asserts there are no errors (warnings allowed).</summary>
    public Runtime BuildOk(string yaml)
    {
        var (rt, errors) = Build(yaml);
        var fatal = errors.Where(e => !e.IsWarning).ToList();
        Assert.True(fatal.Count == 0, "unexpected errors:\n" + string.Join("\n", fatal));
        return rt!;
    }

    /// <summary>Asserts an error (not a warning) at exactly LINE:COL of the config file whose message holds <paramref name="text"/>.</summary>
    public static void HasError(List<ConfigError> errors, string path, int line, int col, string text, bool warning = false)
    {
        var hit = errors.Any(e => e.IsWarning == warning && e.Pos.File == path && e.Pos.Line == line && e.Pos.Col == col
            && e.Message.Contains(text, StringComparison.Ordinal));
        Assert.True(hit, $"expected {(warning ? "warning" : "error")} at {path}:{line}:{col} containing \"{text}\"; got:\n{string.Join("\n", errors)}");
    }
}

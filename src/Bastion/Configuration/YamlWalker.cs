using YamlDotNet.RepresentationModel;

namespace Bastion.Configuration;

/// <summary>Walks YamlDotNet's node tree, collecting errors with FILE:LINE:COL instead of throwing.</summary>
internal sealed class YamlWalker(string file)
{
    public string File { get; } = file;
    public List<ConfigError> Errors { get; } = [];

    public SourcePos Pos(YamlNode n) => new(File, (int)n.Start.Line, (int)n.Start.Column);

    public void Error(YamlNode n, string message) => Errors.Add(new ConfigError(Pos(n), message));

    public void Error(SourcePos p, string message) => Errors.Add(new ConfigError(p, message));

    /// <summary>Reads a mapping, reporting unknown and duplicate keys. Returns null (with an error) if the node is not a map.</summary>
    public Dictionary<string, (YamlNode Key, YamlNode Value)>? Map(YamlNode n, string what, params string[] allowed)
    {
        if (n is not YamlMappingNode m)
        {
            if (n is YamlScalarNode { Value: null or "" } && n.Tag.IsEmpty) return [];
            Error(n, $"{what} must be a map");
            return null;
        }
        var result = new Dictionary<string, (YamlNode, YamlNode)>(StringComparer.Ordinal);
        foreach (var (k, v) in m.Children)
        {
            if (k is not YamlScalarNode { Value: { } key })
            {
                Error(k, $"{what}: keys must be plain words");
                continue;
            }
            if (allowed.Length > 0 && Array.IndexOf(allowed, key) < 0)
            {
                Error(k, Suggest.Closest(key, allowed) is { } near
                    ? $"unknown key '{key}' in {what} (did you mean '{near}'?)"
                    : $"unknown key '{key}' in {what} (expected one of: {string.Join(", ", allowed)})");
                continue;
            }
            if (!result.TryAdd(key, (k, v))) Error(k, $"duplicate key '{key}' in {what}");
        }
        return result;
    }

    public string? Scalar(YamlNode n, string what)
    {
        if (n is YamlScalarNode s) return s.Value ?? "";
        Error(n, $"{what} must be a single value");
        return null;
    }

    /// <summary>A scalar or a list of scalars, as a list.</summary>
    public List<(string Text, YamlNode Node)> ScalarOrList(YamlNode n, string what)
    {
        var list = new List<(string, YamlNode)>();
        if (n is YamlScalarNode s)
        {
            if (s.Value is { Length: > 0 } v) list.Add((v, n));
            else Error(n, $"{what} must not be empty");
        }
        else if (n is YamlSequenceNode seq)
        {
            foreach (var item in seq.Children)
                if (item is YamlScalarNode { Value: { } iv }) list.Add((iv, item));
                else Error(item, $"{what}: each item must be a single value");
        }
        else Error(n, $"{what} must be a value or a list of values");
        return list;
    }

    public bool? Bool(YamlNode n, string what)
    {
        var s = Scalar(n, what);
        switch (s?.ToLowerInvariant())
        {
            case "true" or "yes" or "on": return true;
            case "false" or "no" or "off": return false;
            case null: return null;
            default: Error(n, $"{what} must be true or false, not '{s}'"); return null;
        }
    }

    public int? Int(YamlNode n, string what, int min, int max)
    {
        var s = Scalar(n, what);
        if (s is null) return null;
        if (!int.TryParse(s, out var v) || v < min || v > max)
        {
            Error(n, $"{what} must be a whole number from {min} to {max}, not '{s}'");
            return null;
        }
        return v;
    }

    public TimeSpan? Duration(YamlNode n, string what)
    {
        var s = Scalar(n, what);
        if (s is null) return null;
        if (!Units.TryParseDuration(s, out var d))
        {
            Error(n, $"{what}: '{s}' is not a duration (like 500ms, 30s, 5m)");
            return null;
        }
        return d;
    }

    public long? Size(YamlNode n, string what)
    {
        var s = Scalar(n, what);
        if (s is null) return null;
        if (!Units.TryParseSize(s, out var v))
        {
            Error(n, $"{what}: '{s}' is not a size (like 512, 64KiB, 10MiB)");
            return null;
        }
        return v;
    }

    public HostPort? HostPort(YamlNode n, string what)
    {
        var s = Scalar(n, what);
        if (s is null) return null;
        if (!Configuration.HostPort.TryParse(s, out var hp))
        {
            Error(n, $"{what}: '{s}' is not host:port");
            return null;
        }
        return hp;
    }
}

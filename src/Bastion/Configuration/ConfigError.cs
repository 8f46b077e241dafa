namespace Bastion.Configuration;

/// <summary>A place in a configuration file, kept so that errors found after parsing still point at the text.</summary>
public readonly record struct SourcePos(string File, int Line, int Col)
{
    public override string ToString() => $"{File}:{Line}:{Col}";
}

public sealed record ConfigError(SourcePos Pos, string Message, bool IsWarning = false)
{
    public override string ToString() => $"{Pos}: {(IsWarning ? "warning: " : "")}{Message}";
}

/// <summary>Thrown when a configuration has errors; carries every problem found, not just the first.</summary>
public sealed class ConfigException(IReadOnlyList<ConfigError> errors)
    : Exception(string.Join(Environment.NewLine, errors))
{
    public IReadOnlyList<ConfigError> Errors { get; } = errors;
}

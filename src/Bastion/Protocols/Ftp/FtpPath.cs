using System.Text;
using System.Text.Unicode;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// Paths as the policy sees them: a command's argument resolved against the session's working directory and
/// normalised (`.`, `..`, `//`, a trailing slash), so `CWD ro` + `STOR x` is `/ro/x` and `/ro/../ro` is `/ro`.
/// `..` never climbs above `/`. Forms whose meaning depends on the server are refused rather than guessed.
/// </summary>
public static class FtpPath
{
    public const int MaxLength = 4096;

    /// <summary>
    /// Resolves <paramref name="arg"/> (the bytes the client sent) against <paramref name="cwd"/> (absolute, normalised).
    /// <paramref name="canonical"/> says the argument already names exactly <paramref name="path"/> on the server
    /// (a plain relative or absolute path), so it can be forwarded as written; otherwise the gateway forwards the
    /// resolved path, so that what the server acts on is what the policy judged.
    /// </summary>
    public static bool TryResolve(string cwd, ReadOnlySpan<byte> arg, out string path, out bool canonical, out string? error)
    {
        path = cwd;
        canonical = false;
        if (arg.Length > MaxLength) { error = "path too long"; return false; }
        if (!Utf8.IsValid(arg)) { error = "path is not valid UTF-8"; return false; }
        foreach (var b in arg)
        {
            if (b < 0x20 || b == 0x7F) { error = "control characters in the path"; return false; }
            // On some servers '\' separates folders and '~' names a home folder: ambiguous, so refused.
            if (b == (byte)'\\') { error = "backslash in the path"; return false; }
        }
        if (arg.Length > 0 && arg[0] == (byte)'~') { error = "'~' paths are not accepted"; return false; }
        var text = Encoding.UTF8.GetString(arg);
        bool absolute = text.StartsWith('/');
        path = Normalize(absolute ? text : cwd == "/" ? "/" + text : cwd + "/" + text);
        canonical = absolute ? path == text : IsPlainRelative(text);
        error = null;
        return true;
    }

    /// <summary>An absolute path with `.`, `..` and empty segments removed and no trailing slash (`/` for the root).</summary>
    public static string Normalize(string absolute)
    {
        var segments = new List<string>();
        foreach (var seg in absolute.Split('/'))
        {
            if (seg.Length == 0 || seg == ".") continue;
            if (seg == "..")
            {
                if (segments.Count > 0) segments.RemoveAt(segments.Count - 1);
                continue;
            }
            segments.Add(seg);
        }
        return segments.Count == 0 ? "/" : "/" + string.Join('/', segments);
    }

    /// <summary>The parent of a normalised path (CDUP); the root's parent is the root.</summary>
    public static string Parent(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    static bool IsPlainRelative(string text)
    {
        if (text.Length == 0 || text.EndsWith('/')) return false;
        foreach (var seg in text.Split('/'))
            if (seg.Length == 0 || seg == "." || seg == "..") return false;
        return true;
    }

    /// <summary>
    /// The directory a 257 reply names (PWD, MKD): the text starts with a quoted name in which `""` stands for one
    /// quote (RFC 959 appendix II). The name must be absolute and valid UTF-8.
    /// </summary>
    public static bool TryParse257(ReadOnlySpan<byte> text, out string? dir)
    {
        dir = null;
        int i = 0;
        while (i < text.Length && text[i] == (byte)' ') i++;
        if (i >= text.Length || text[i] != (byte)'"') return false;
        i++;
        var name = new List<byte>();
        while (true)
        {
            if (i >= text.Length) return false;
            byte b = text[i];
            if (b == (byte)'"')
            {
                if (i + 1 < text.Length && text[i + 1] == (byte)'"') { name.Add(b); i += 2; continue; }
                break;
            }
            if (b < 0x20) return false;
            name.Add(b);
            i++;
        }
        var bytes = name.ToArray();
        if (bytes.Length == 0 || bytes[0] != (byte)'/' || !Utf8.IsValid(bytes)) return false;
        dir = Normalize(Encoding.UTF8.GetString(bytes));
        return true;
    }

    /// <summary>Bytes to send for a path the gateway forwards in place of the client's argument.</summary>
    public static byte[] Encode(string path) => Encoding.UTF8.GetBytes(path);
}

using System.Net.Sockets;
using System.Security.Cryptography;

namespace Bastion.Hosting;

/// <summary>
/// A gateway that cannot start (an address in use, a log or certificate it cannot open): one line that names the
/// part at fault, for `bastion run` to print before it exits 1 instead of crashing.
/// </summary>
public sealed class StartupException(string message, Exception? inner = null) : Exception(message, inner);

public static class StartupFault
{
    /// <summary>Exceptions that mean "this part cannot start", as opposed to a bug.</summary>
    public static bool IsExpected(Exception e) =>
        e is IOException or SocketException or UnauthorizedAccessException or CryptographicException
            or InvalidOperationException or StartupException;

    /// <summary>What went wrong, in one line: the socket's own words for a bind, else the innermost message.</summary>
    public static string Describe(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
            if (x is SocketException s) return OneLine(s.Message);
        var inner = e;
        while (inner.InnerException is not null && inner is not StartupException) inner = inner.InnerException;
        return OneLine(inner.Message);
    }

    static string OneLine(string s)
    {
        var line = s.ReplaceLineEndings(" ").Trim();
        return line.EndsWith('.') ? line[..^1] : line;
    }
}

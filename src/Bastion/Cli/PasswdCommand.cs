using System.Runtime.InteropServices;
using System.Text;
using Bastion.Identity;

namespace Bastion.Cli;

/// <summary>
/// `bastion passwd FILE USER`: on a terminal the password is asked twice without echo (as htpasswd and passwd do);
/// from a pipe, or with --stdin, it is the first line of standard input.
/// </summary>
static class PasswdCommand
{
    public static int Run(string[] args)
    {
        bool stdin = Commands.Flag(ref args, "--stdin");
        if (args.Length > 0 && args[0].StartsWith('-')) Commands.NoMore(args, "--stdin");
        if (args.Length != 2) throw new Commands.UsageException("passwd needs FILE USER");
        var (file, user) = (args[0], args[1]);
        if (user.Length == 0 || user.Contains(':') || user.Any(char.IsWhiteSpace))
            throw new Commands.UsageException("a user name must not be empty or contain ':' or spaces");

        string? password;
        if (stdin || Console.IsInputRedirected) password = Console.In.ReadLine();
        else
        {
            password = ReadHidden($"password for {user}: ");
            if (!string.IsNullOrEmpty(password) && ReadHidden("again: ") != password)
            {
                Console.Error.WriteLine("bastion: the passwords do not match; nothing written");
                return Commands.ExitUsage;
            }
        }
        if (string.IsNullOrEmpty(password))
        {
            Console.Error.WriteLine("bastion: empty password refused");
            return Commands.ExitUsage;
        }
        if (Htpasswd.PasswordProblem(password) is { } problem) throw new Commands.UsageException(problem);
        try { Htpasswd.Upsert(file, user, Htpasswd.HashBcrypt(password)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bastion: cannot write {file}: {e.Message}");
            return Commands.ExitUsage;
        }
        Console.Error.WriteLine($"bastion: {user} saved in {file}");
        return Commands.ExitOk;
    }

    /// <summary>
    /// A line typed on the terminal, not echoed. On Linux echo is turned off (termios, as getpass does) before the
    /// prompt is shown and until the line ends, so nothing typed ahead is echoed either; the kernel edits the line.
    /// </summary>
    static string ReadHidden(string prompt)
    {
        if (!OperatingSystem.IsLinux()) return ReadKeys(prompt);
        // .NET sets up the terminal on first use of the console or of signals: let it do so before echo goes off.
        var error = Console.Error;
        // fd 0 itself: .NET's console stream would emulate a line editor and echo what is typed.
        using var stdin = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(0, ownsHandle: false), FileAccess.Read, 1);
        var saved = new byte[TermiosSize];
        if (tcgetattr(0, saved) != 0) return ReadKeys(prompt);
        var quiet = (byte[])saved.Clone();
        uint lflag = BitConverter.ToUInt32(quiet, LflagOffset);
        BitConverter.TryWriteBytes(quiet.AsSpan(LflagOffset), (lflag & ~Echo) | EchoNewline);
        // Ctrl-C must not leave the terminal silent.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => tcsetattr(0, 0, saved));
        error.Flush();
        tcsetattr(0, 0 /* TCSANOW */, quiet);
        try
        {
            error.Write(prompt);
            error.Flush();
            var line = new List<byte>();
            int b;
            while ((b = stdin.ReadByte()) >= 0 && b != '\n') line.Add((byte)b);
            return Encoding.UTF8.GetString([.. line]).TrimEnd('\r');
        }
        finally { tcsetattr(0, 0, saved); }
    }

    // struct termios on Linux: c_iflag, c_oflag, c_cflag, c_lflag (uint each), c_line, c_cc[32], speeds: 60 bytes.
    const int TermiosSize = 64, LflagOffset = 12;
    const uint Echo = 0x8, EchoNewline = 0x40;

    [DllImport("libc", SetLastError = true)]
    static extern int tcgetattr(int fd, byte[] termios);

    [DllImport("libc", SetLastError = true)]
    static extern int tcsetattr(int fd, int actions, byte[] termios);

    /// <summary>Elsewhere: key by key without echo (backspace edits, Enter ends it).</summary>
    static string ReadKeys(string prompt)
    {
        Console.Error.Write(prompt);
        var sb = new StringBuilder();
        while (true)
        {
            var k = Console.ReadKey(intercept: true);
            if (k.Key == ConsoleKey.Enter) break;
            if (k.Key == ConsoleKey.Backspace)
            {
                if (sb.Length > 0) sb.Length--;
            }
            else if (k.KeyChar != '\0') sb.Append(k.KeyChar);
        }
        Console.Error.WriteLine();
        return sb.ToString();
    }
}
